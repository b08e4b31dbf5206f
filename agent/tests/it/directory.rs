//! Directory mode end to end: real directory and relay agents on loopback, a real origin and
//! a real network repository in git; plus snapshot tests of the redirect headers and the
//! Metalink, built from the routing function with fixed placeholder URLs so they are stable.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use odi_agent::directory::region::RegionMap;
use odi_agent::directory::route::{BuildInput, Healthy, Held, Serves, Table};
use odi_agent::directory::stats::Stats;
use odi_agent::node::View;
use odi_network::assign::{assign, Extras};
use odi_network::Network;

use crate::support::{self, CATALOG, EXPUNGED};
use crate::testnet::{client, eventually, get_json, Behavior, TestNet};

const WAIT: Duration = Duration::from_secs(40);
/// The probe interval TestNet configures.
const PROBE: Duration = Duration::from_millis(300);

fn load(builder: &odi_network::builder::NetworkBuilder) -> Network {
    let tree = builder.tree().unwrap();
    odi_network::load(
        &tree,
        &Default::default(),
        &Default::default(),
        time::OffsetDateTime::now_utc(),
    )
    .unwrap()
    .network
}

fn live_paths() -> Vec<String> {
    support::artifact_bytes().into_iter().map(|(p, _)| p).filter(|p| p != EXPUNGED).collect()
}

/// The directory section of a status document.
async fn dir_status(base: &str) -> serde_json::Value {
    let doc: serde_json::Value =
        client().get(format!("{base}/.odi/v1/status")).send().await.unwrap().json().await.unwrap();
    doc["directory"].clone()
}

fn relay_entry<'a>(d: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    d["relays"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["name"] == name))
        .unwrap_or(&serde_json::Value::Null)
}

/// Waits until `relays` are healthy at the directory and every live artifact is routable.
pub(crate) async fn wait_routable(net: &TestNet, dir: &str, relays: &[&str]) {
    let base = net.url(dir);
    let n = live_paths().len();
    eventually(&format!("{dir}: {relays:?} healthy and all {n} artifacts routable"), WAIT, || {
        let base = base.clone();
        async move {
            let d = dir_status(&base).await;
            relays.iter().all(|r| relay_entry(&d, r)["healthy"] == true)
                && d["routing"]["routable"] == n
                && d["routing"]["current"] == true
        }
    })
    .await;
}

/// Which node a redirect points at (by port), or the Location itself.
fn who(net: &TestNet, location: &str) -> String {
    net.ports
        .iter()
        .find(|(_, p)| location.starts_with(&format!("http://127.0.0.1:{p}/")))
        .map(|(n, _)| n.clone())
        .unwrap_or_else(|| location.to_owned())
}

/// GETs without following redirects: (status, node redirected to).
async fn ask(
    net: &TestNet,
    c: &reqwest::Client,
    dir: &str,
    path: &str,
    xff: Option<&str>,
) -> (u16, Option<String>) {
    let mut req = c.get(format!("{}/r/{CATALOG}/{path}", net.url(dir)));
    if let Some(x) = xff {
        req = req.header("x-forwarded-for", x);
    }
    let r = req.send().await.unwrap();
    let loc = r.headers().get("location").map(|l| who(net, l.to_str().unwrap()));
    (r.status().as_u16(), loc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_follows_the_redirect_to_exact_bytes_with_404_and_410() {
    let net = TestNet::small().await;
    let dir = net.start("dir-a").await;
    let r1 = net.start("relay-1").await;
    let r3 = net.start("relay-3").await;
    wait_routable(&net, "dir-a", &["relay-1", "relay-3"]).await;

    let bytes: BTreeMap<String, Vec<u8>> = support::artifact_bytes().into_iter().collect();
    let c = client();
    for path in live_paths() {
        let r = c.get(format!("{}/r/{CATALOG}/{path}", net.url("dir-a"))).send().await.unwrap();
        assert_eq!(r.status(), 302, "{path}");
        let h = r.headers();
        assert_eq!(h["cache-control"], "private, no-cache");
        let loc = h["location"].to_str().unwrap();
        assert!(
            loc.ends_with(&format!("/r/{CATALOG}/{path}")),
            "keeps the path and basename: {loc}"
        );
        assert!(["relay-1", "relay-3"].contains(&who(&net, loc).as_str()), "{path} -> {loc}");
        let b64 = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            support::sha256(&bytes[&path]).0,
        );
        assert_eq!(h["digest"], format!("SHA-256={b64}").as_str());
        assert_eq!(h["repr-digest"], format!("sha-256=:{b64}:").as_str());
        let links: Vec<&str> = h.get_all("link").iter().map(|v| v.to_str().unwrap()).collect();
        assert!(
            links
                .iter()
                .any(|l| l.ends_with("; rel=describedby; type=\"application/metalink4+xml\"")
                    && l.contains(&format!("/r/{CATALOG}/{path}.meta4>"))),
            "{links:?}"
        );

        // The real curl, following the redirect, gets exactly the artifact.
        let out = std::process::Command::new("curl")
            .args(["-sS", "-L", "--fail", "--max-time", "20"])
            .arg(format!("{}/r/{CATALOG}/{path}", net.url("dir-a")))
            .output()
            .unwrap();
        assert!(out.status.success(), "curl {path}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.stdout, bytes[&path], "{path}: curl -L got the exact bytes");
    }

    // HEAD redirects the same way.
    let r = c.head(format!("{}/r/{CATALOG}/hello.txt", net.url("dir-a"))).send().await.unwrap();
    assert_eq!(r.status(), 302);

    // The Metalink names the file, its size and hash, and the relays then the directory.
    let r = c
        .get(format!("{}/r/{CATALOG}/data/blob-64k.bin.meta4", net.url("dir-a")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/metalink4+xml");
    let doc = r.text().await.unwrap();
    assert!(
        doc.contains("<file name=\"blob-64k.bin\">") && doc.contains("<size>65536</size>"),
        "{doc}"
    );
    assert!(doc.contains(&support::sha256_hex(&bytes["data/blob-64k.bin"])), "{doc}");
    let urls: Vec<String> = doc
        .lines()
        .filter(|l| l.contains("<url "))
        .map(|l| who(&net, l.split('>').nth(1).unwrap()))
        .collect();
    assert_eq!(urls.last().map(String::as_str), Some("dir-a"), "directory last: {urls:?}");
    assert!(urls.len() >= 2, "{urls:?}");

    // Unknown: 404; expunged: 410 with the reason; hostile: 400; unknown catalog: 404.
    let r = c.get(format!("{}/r/{CATALOG}/no/such.bin", net.url("dir-a"))).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = c.get(format!("{}/r/{CATALOG}/{EXPUNGED}", net.url("dir-a"))).send().await.unwrap();
    assert_eq!(r.status(), 410);
    assert!(r.text().await.unwrap().contains("corrupted upload"));
    assert_eq!(
        c.get(format!("{}/r/{CATALOG}/%2e%2e/x", net.url("dir-a"))).send().await.unwrap().status(),
        400
    );
    assert_eq!(
        c.get(format!("{}/r/nocatalog/x.bin", net.url("dir-a"))).send().await.unwrap().status(),
        404
    );
    assert_eq!(
        c.post(format!("{}/r/{CATALOG}/hello.txt", net.url("dir-a")))
            .send()
            .await
            .unwrap()
            .status(),
        405
    );

    // `odi status URL` shows every relay's health for a person.
    let out = support::run_odi(["status", &net.url("dir-a")]);
    assert_eq!(out.code, 0, "{}", out.both());
    assert!(
        out.stdout.contains("relay-1")
            && out.stdout.contains("relay-3")
            && out.stdout.contains("healthy"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("5 of 5 artifacts have a healthy relay"), "{}", out.stdout);

    // With every relay gone, the directory serves the bytes itself.
    r1.stop().await;
    r3.stop().await;
    eventually("no routable artifacts", WAIT, || async {
        dir_status(&net.url("dir-a")).await["routing"]["routable"] == 0
    })
    .await;
    let r = c
        .get(format!("{}/r/{CATALOG}/tools/tool-1.0.tar.gz", net.url("dir-a")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r
        .headers()
        .get_all("link")
        .iter()
        .any(|l| l.to_str().unwrap().contains("rel=describedby")));
    assert!(r.headers().contains_key("repr-digest"));
    assert_eq!(r.bytes().await.unwrap().as_ref(), bytes["tools/tool-1.0.tar.gz"].as_slice());
    let stats: serde_json::Value = c
        .get(format!("{}/.odi/v1/stats", net.url("dir-a")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(stats["directory"].as_u64().unwrap() >= 1, "{stats}");
    dir.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_clients_behind_a_trusted_proxy_are_never_sent_to_plain_http_relays() {
    let net = TestNet::small().await;
    let dir = net.start("dir-a").await;
    let r1 = net.start("relay-1").await;
    let r3 = net.start("relay-3").await;
    wait_routable(&net, "dir-a", &["relay-1", "relay-3"]).await;
    let bytes: BTreeMap<String, Vec<u8>> = support::artifact_bytes().into_iter().collect();
    let c = client();
    let url = format!("{}/r/{CATALOG}/hello.txt", net.url("dir-a"));
    // Every relay here serves plain HTTP. The test's loopback address is a trusted proxy, so
    // its X-Forwarded-Proto is believed, on the plain path (no query) and the router's
    // (a query) alike.
    for query in ["", "?x=1"] {
        let plain = c.get(format!("{url}{query}")).send().await.unwrap();
        assert_eq!(plain.status(), 302, "an HTTP client goes to a relay");
        let secure = c
            .get(format!("{url}{query}"))
            .header("x-forwarded-proto", "https")
            .send()
            .await
            .unwrap();
        assert_eq!(secure.status(), 200, "an HTTPS client gets the directory's own copy");
        assert!(secure.headers().get("location").is_none());
        assert!(secure
            .headers()
            .get_all("link")
            .iter()
            .all(|l| !l.to_str().unwrap().contains("rel=duplicate")));
        assert_eq!(secure.bytes().await.unwrap().as_ref(), bytes["hello.txt"].as_slice());
    }
    let doc = c
        .get(format!("{url}.meta4"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for r in ["relay-1", "relay-3"] {
        assert!(!doc.contains(&net.url(r)), "no plain-HTTP relay in the Metalink: {doc}");
    }
    assert!(doc.contains(&net.url("dir-a")), "{doc}");
    r1.stop().await;
    r3.stop().await;
    dir.stop().await;
}

/// A directory listening on `[::]` answers both families, and sends each client only to
/// relays that answered their probe over the client's family: relay-3 listens on `::1` only
/// (its URL an IPv6 literal), relay-1 on 127.0.0.1 only, known by the name `localhost`
/// (which may or may not resolve to `::1` too: either way it cannot answer over IPv6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_go_only_to_relays_that_answered_over_their_address_family() {
    let mut net = TestNet::small().await;
    net.rehost("dir-a", "[::]", "127.0.0.1");
    net.rehost("relay-3", "[::1]", "[::1]");
    net.rehost("relay-1", "127.0.0.1", "localhost");
    let dir = net.start("dir-a").await;
    let r1 = net.start("relay-1").await;
    let r3 = net.start("relay-3").await;
    wait_routable(&net, "dir-a", &["relay-1", "relay-3"]).await;
    let d = dir_status(&net.url("dir-a")).await;
    let (e1, e3) = (relay_entry(&d, "relay-1"), relay_entry(&d, "relay-3"));
    assert_eq!(e3["ipv6"], "passed", "{e3}");
    assert!(e3["ipv4"].is_null(), "an IPv6 literal is not probed over IPv4: {e3}");
    assert_eq!(e1["ipv4"], "passed", "{e1}");
    assert!(
        e1["ipv6"].is_null() || e1["ipv6"].as_str().is_some_and(|s| s.starts_with("failed")),
        "{e1}"
    );

    let port = net.ports["dir-a"];
    let (at1, at3) = (
        format!("http://localhost:{}/", net.ports["relay-1"]),
        format!("http://[::1]:{}/", net.ports["relay-3"]),
    );
    let bytes: BTreeMap<String, Vec<u8>> = support::artifact_bytes().into_iter().collect();
    let c = client();
    // (directory address, the relay its clients may go to, the one they never go to)
    let cases = [(format!("127.0.0.1:{port}"), &at1, &at3), (format!("[::1]:{port}"), &at3, &at1)];
    for (host, may, never) in &cases {
        let mut sent = 0;
        // The plain path (no query) and the router's (a query) alike.
        for query in ["", "?x=1"] {
            for path in live_paths() {
                for _ in 0..4 {
                    let url = format!("http://{host}/r/{CATALOG}/{path}{query}");
                    let resp = c.get(&url).send().await.unwrap();
                    let links: Vec<String> = resp
                        .headers()
                        .get_all("link")
                        .iter()
                        .map(|l| l.to_str().unwrap().to_owned())
                        .collect();
                    assert!(links.iter().all(|l| !l.contains(never.as_str())), "{url}: {links:?}");
                    match resp.status().as_u16() {
                        302 => {
                            let loc = resp.headers()["location"].to_str().unwrap();
                            assert!(loc.starts_with(may.as_str()), "{url} went to {loc}");
                            sent += 1;
                        }
                        // Not held by the relay of this family: the directory's own copy.
                        200 => assert_eq!(resp.bytes().await.unwrap().as_ref(), bytes[&path]),
                        s => panic!("{url}: HTTP {s}"),
                    }
                }
            }
        }
        assert!(sent > 0, "clients of {host} were sent to {may} at least once");
        let meta = c
            .get(format!("http://{host}/r/{CATALOG}/hello.txt.meta4"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!meta.contains(never.as_str()), "{meta}");
    }

    // The mirror list says why relay-1 is not offered to an IPv6 client, when it holds the
    // artifact at all.
    let list =
        get_json(c.get(format!("http://[::1]:{port}/r/{CATALOG}/hello.txt?mirrorlist"))).await;
    for m in list["relays"].as_array().unwrap() {
        if m["relay"] == "relay-1" && m["holds"] == true {
            assert!(m["excluded"].as_str().unwrap().contains("IPv6"), "{m}");
            assert_eq!(m["rank"], serde_json::Value::Null, "{m}");
        }
        if m["relay"] == "relay-3" {
            assert_eq!(m["families"], serde_json::json!(["IPv6"]), "{m}");
        }
    }

    // curl over IPv6 follows the redirect to the IPv6-only relay and gets the exact bytes.
    for path in live_paths() {
        let out = std::process::Command::new("curl")
            .args(["-sSfgL", "--max-time", "10"])
            .arg(format!("http://[::1]:{port}/r/{CATALOG}/{path}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{path}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.stdout, bytes[&path], "{path}");
    }
    r1.stop().await;
    r3.stop().await;
    dir.stop().await;
}

/// Sends requests for every live artifact and returns which nodes they were redirected to.
async fn targets(net: &TestNet, rounds: usize) -> HashMap<String, usize> {
    let c = client();
    let mut seen = HashMap::new();
    for _ in 0..rounds {
        for p in live_paths() {
            let (status, loc) = ask(net, &c, "dir-a", &p, None).await;
            assert!(status == 302 || status == 200, "{p}: {status}");
            *seen.entry(loc.unwrap_or_else(|| "dir-a (itself)".into())).or_insert(0) += 1;
        }
    }
    seen
}

/// Waits until the directory stops redirecting to `relay`; returns how long that took.
async fn until_out(net: &TestNet, relay: &str, since: Instant) -> Duration {
    let base = net.url("dir-a");
    eventually(&format!("{relay} unhealthy"), WAIT, || {
        let base = base.clone();
        async move { relay_entry(&dir_status(&base).await, relay)["healthy"] == false }
    })
    .await;
    let took = since.elapsed();
    let seen = targets(net, 5).await;
    assert!(!seen.contains_key(relay), "no redirect to {relay} once it is out: {seen:?}");
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_or_corrupt_relay_gets_no_redirects_until_repaired() {
    let net = TestNet::small().await;
    let dir = net.start("dir-a").await;
    let r1 = net.start("relay-1").await;
    let r3 = net.start("relay-3").await;
    wait_routable(&net, "dir-a", &["relay-1", "relay-3"]).await;
    let odi_agent::app::Role::Directory(mode) = &dir.role else { panic!("dir-a is a directory") };
    let routed: std::collections::BTreeSet<String> = mode
        .table()
        .entries()
        .iter()
        .flat_map(|e| e.candidates.iter().map(|c| c.relay.to_string()))
        .collect();
    assert_eq!(
        routed.into_iter().collect::<Vec<_>>(),
        ["relay-1", "relay-3"],
        "both relays are in the routing table"
    );

    // Corrupt one artifact relay-3 claims: same size, other bytes, on its disk.
    let inv: odi_agent::wire::Inventory = client()
        .get(format!("{}/.odi/v1/inventory", net.url("relay-3")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let victim =
        inv.artifacts.iter().filter(|i| i.size > 0).max_by_key(|i| i.size).unwrap().clone();
    let mut sha = [0u8; 32];
    hex::decode_to_slice(&victim.sha256, &mut sha).unwrap();
    let file = r3.node.store.object_path(&sha);
    let good = std::fs::read(&file).unwrap();
    let bad: Vec<u8> = good.iter().map(|b| b ^ 0xff).collect();
    let t = Instant::now();
    std::fs::write(&file, &bad).unwrap();
    let took = until_out(&net, "relay-3", t).await;
    eprintln!("corrupt relay-3 out after {took:?} (probe interval {PROBE:?})");
    assert!(
        took < PROBE * 2 + Duration::from_secs(4),
        "out within about two probe intervals: {took:?}"
    );
    let d = dir_status(&net.url("dir-a")).await;
    let reason = relay_entry(&d, "relay-3")["reason"].as_str().unwrap_or("").to_owned();
    assert!(reason.contains("content check") && reason.contains(&victim.path), "{reason}");

    // Repaired: back in rotation after a passing probe.
    std::fs::write(&file, &good).unwrap();
    wait_routable(&net, "dir-a", &["relay-1", "relay-3"]).await;
    eventually("redirects to relay-3 again", WAIT, || async {
        targets(&net, 2).await.contains_key("relay-3")
    })
    .await;

    // Stopped: out within about two probe intervals; restarted: back.
    let t = Instant::now();
    r1.stop().await;
    let took = until_out(&net, "relay-1", t).await;
    eprintln!("stopped relay-1 out after {took:?}");
    assert!(
        took < PROBE * 2 + Duration::from_secs(4),
        "out within about two probe intervals: {took:?}"
    );
    let d = dir_status(&net.url("dir-a")).await;
    assert!(
        relay_entry(&d, "relay-1")["reason"].as_str().unwrap_or("").contains("unreachable"),
        "{d}"
    );
    let r1 = net.start("relay-1").await;
    wait_routable(&net, "dir-a", &["relay-1", "relay-3"]).await;
    eventually("redirects to relay-1 again", WAIT, || async {
        targets(&net, 2).await.contains_key("relay-1")
    })
    .await;

    for a in [r1, r3, dir] {
        a.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_relay_never_gets_an_artifact_it_does_not_list() {
    let mut builder = support::small_network();
    // Every relay holds every artifact, so the new artifact is assigned to the lagging relay
    // too and a directory that trusted the assignment would send clients there.
    builder.catalogs.get_mut(CATALOG).unwrap().replicas = 3;
    let mut net = TestNet::new(builder, support::artifact_bytes()).await;
    let dir = net.start("dir-a").await;
    let r1 = net.start("relay-1").await;
    // relay-3 follows branch `old`, which never gets the next commit.
    {
        let repo = git2::Repository::open(&net.repo).unwrap();
        let head = repo.head().unwrap().peel_to_commit().unwrap();
        repo.branch("old", &head, true).unwrap();
    }
    let mut config = net.config("relay-3");
    config.branch = "old".into();
    let r3 =
        odi_agent::app::start(config, tokio_util::sync::CancellationToken::new()).await.unwrap();
    wait_routable(&net, "dir-a", &["relay-1", "relay-3"]).await;

    // A new artifact on main.
    let new_path = "releases/1.2/app-1.2.bin";
    let new_bytes = support::generated_bytes(new_path, 50 << 10);
    net.origin.set(new_path, Behavior::Good(new_bytes.clone()));
    net.builder
        .catalogs
        .get_mut(CATALOG)
        .unwrap()
        .artifacts
        .push(support::entry(new_path, &new_bytes));
    net.builder.catalogs.get_mut(CATALOG).unwrap().serial += 1;
    let commit = net.commit("add app 1.2");
    let network = load(&net.builder);
    assert!(
        assign(&network, &Extras::new()).holders(CATALOG, new_path).contains(&"relay-3"),
        "the new artifact is assigned to relay-3"
    );

    // The directory and relay-1 move on; relay-3 stays behind but healthy.
    let base = net.url("dir-a");
    let c = client();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let start = Instant::now();
    loop {
        let (status, loc) = ask(&net, &c, "dir-a", new_path, None).await;
        assert!(status == 302 || status == 200 || status == 404, "{status}");
        if let Some(l) = loc {
            assert_ne!(
                l, "relay-3",
                "the lagging relay was sent a request for an artifact it does not list"
            );
            *seen.entry(l).or_insert(0) += 1;
        }
        if seen.get("relay-1").copied().unwrap_or(0) >= 50 {
            break;
        }
        assert!(start.elapsed() < WAIT, "relay-1 never got the new artifact: {seen:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let d = dir_status(&base).await;
    let lag = relay_entry(&d, "relay-3");
    assert_eq!(lag["healthy"], true, "{d}");
    assert_eq!(lag["lagging"], true, "{d}");
    assert_ne!(lag["commit"], commit.as_str());
    // It still serves what it lists with the same bytes: old artifacts go to it.
    let old = targets(&net, 4).await;
    assert!(old.contains_key("relay-3"), "{old:?}");
    for _ in 0..100 {
        let (_, loc) = ask(&net, &c, "dir-a", new_path, None).await;
        assert_ne!(loc.as_deref(), Some("relay-3"));
    }
    for a in [r1, r3, dir] {
        a.stop().await;
    }
}

fn share(counts: &HashMap<String, usize>, name: &str) -> f64 {
    counts.get(name).copied().unwrap_or(0) as f64 / counts.values().sum::<usize>() as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_preference_weights_statistics_and_hot_list() {
    let mut builder = support::small_network();
    builder.catalogs.get_mut(CATALOG).unwrap().replicas = 3;
    // relay-2 (us) also works with dir-a, so that region preference has something to prefer.
    builder.relays.get_mut("relay-2").unwrap().directories = vec!["dir-a".into(), "dir-b".into()];
    let mut net = TestNet::new(builder, support::artifact_bytes()).await;
    net.extra_config.insert(
        "dir-a".into(),
        "regions = { \"10.1.0.0/16\" = \"eu\", \"10.2.0.0/16\" = \"us\" }\nhot_threshold = 50\n"
            .into(),
    );
    let dir = net.start("dir-a").await;
    let relays =
        [net.start("relay-1").await, net.start("relay-2").await, net.start("relay-3").await];
    wait_routable(&net, "dir-a", &["relay-1", "relay-2", "relay-3"]).await;

    let c = client();
    let path = "data/blob-64k.bin";
    let run = |xff: Option<&'static str>, n: usize| {
        let (net, c) = (&net, &c);
        async move {
            let mut counts: HashMap<String, usize> = HashMap::new();
            for i in 0..n {
                // Many client addresses of the region, from the trusted proxy 127.0.0.1.
                let addr = xff.map(|p| format!("{p}.{}.{}", i / 250, i % 250 + 1));
                let (status, loc) = ask(net, c, "dir-a", path, addr.as_deref()).await;
                assert_eq!(status, 302);
                *counts.entry(loc.unwrap()).or_insert(0) += 1;
            }
            counts
        }
    };
    // eu clients: relay-1 (1 MiB) and relay-3 (4 MiB) only, 1:4.
    // Shares are only meaningful while the routing holds still: on a loaded machine a probe
    // can time out and briefly take a relay out, and crossing the hot threshold (50 here)
    // re-installs the directory's view and rebuilds its table. A run during which any probe
    // failed, the hot list changed or the table was rebuilt is repeated (the request counts
    // below include every run).
    let routing_state = || async {
        let m = c
            .get(format!("{}/metrics", net.url("dir-a")))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let failures = m
            .lines()
            .filter(|l| l.starts_with("odi_probes_total{") && !l.contains("outcome=\"ok\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
        let d = dir_status(&net.url("dir-a")).await;
        let healthy: Vec<bool> =
            d["relays"].as_array().into_iter().flatten().map(|r| r["healthy"] == true).collect();
        (failures.to_string(), d["hot"].clone(), d["routing"]["current"].clone(), healthy)
    };
    let mut requests = 0usize;
    let stable = |xff: Option<&'static str>, n: usize| {
        let (run, routing_state) = (&run, &routing_state);
        async move {
            let mut made = 0;
            for _ in 0..5 {
                let before = routing_state().await;
                let counts = run(xff, n).await;
                made += n;
                if routing_state().await == before && before.2 == true {
                    return (counts, made);
                }
            }
            panic!("relay health or routing kept changing during five measurement runs");
        }
    };
    let (eu, eu_requests) = stable(Some("10.1"), 2000).await;
    requests += eu_requests;
    eprintln!("eu: {eu:?}");
    assert!(!eu.contains_key("relay-2"), "{eu:?}");
    assert!((share(&eu, "relay-1") - 0.2).abs() < 0.05, "{eu:?}");
    assert!((share(&eu, "relay-3") - 0.8).abs() < 0.05, "{eu:?}");
    // us clients: the us relay.
    let (us, made) = stable(Some("10.2"), 200).await;
    requests += made;
    assert!(us.len() == 1 && us.contains_key("relay-2"), "{us:?}");
    // Clients of no known region: everyone by weight, 1:2:4.
    let (anywhere, made) = stable(None, 2000).await;
    requests += made;
    eprintln!("anywhere: {anywhere:?}");
    for (r, w) in [("relay-1", 1.0 / 7.0), ("relay-2", 2.0 / 7.0), ("relay-3", 4.0 / 7.0)] {
        assert!((share(&anywhere, r) - w).abs() < 0.05, "{r}: {anywhere:?}");
    }
    // A spoofed X-Forwarded-For from an untrusted peer is ignored: only 127.0.0.1 is trusted,
    // and requests come from 127.0.0.1, so this checks the right-most-untrusted rule instead.
    let (_, loc) = ask(&net, &c, "dir-a", path, Some("10.2.0.1, 10.1.0.1")).await;
    assert_ne!(loc.as_deref(), Some("relay-2"), "the right-most untrusted address (eu) decides");

    // Statistics: per relay and region in /metrics, per artifact in /.odi/v1/stats.
    let metrics =
        c.get(format!("{}/metrics", net.url("dir-a"))).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("odi_redirects_total{relay=\"relay-3\"}"), "{metrics}");
    let eu_total = eu_requests + 1; // plus the spoofed-header request, which counts as eu
    assert!(
        metrics.contains(&format!("odi_region_downloads_total{{region=\"eu\"}} {eu_total}")),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("odi_downloads_total{{catalog=\"demo\"}} {}", requests + 1)),
        "{metrics}"
    );
    let stats: serde_json::Value = c
        .get(format!("{}/.odi/v1/stats", net.url("dir-a")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["top"][0]["path"], path, "{stats}");
    assert_eq!(stats["top"][0]["downloads"], requests + 1, "{stats}");

    // Over the hot threshold: published for relays, and in the directory's own assignment.
    eventually("hot list", WAIT, || async {
        let hot: odi_agent::wire::HotList = c
            .get(format!("{}/.odi/v1/hot", net.url("dir-a")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        hot.artifacts.iter().any(|h| h.path == path && h.extra == 1)
    })
    .await;
    eventually("directory view has the extra", WAIT, || async {
        dir.node
            .view()
            .is_some_and(|v| v.extras.contains_key(&(CATALOG.to_owned(), path.to_owned())))
    })
    .await;

    // Counts survive a restart (flushed at shutdown, loaded at start).
    dir.stop().await;
    let dir = net.start("dir-a").await;
    let stats: serde_json::Value = c
        .get(format!("{}/.odi/v1/stats", net.url("dir-a")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["top"][0]["downloads"], requests + 1, "{stats}");
    assert_eq!(
        stats["relays"]["relay-2"].as_u64().unwrap()
            + stats["relays"]["relay-1"].as_u64().unwrap()
            + stats["relays"]["relay-3"].as_u64().unwrap(),
        requests as u64 + 1
    );
    // So does the last hour's window: the artifact is still hot without a new download.
    eventually("hot list after a restart", WAIT, || async {
        let hot: odi_agent::wire::HotList = c
            .get(format!("{}/.odi/v1/hot", net.url("dir-a")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        hot.artifacts.iter().any(|h| h.path == path && h.extra == 1)
    })
    .await;
    for a in relays {
        a.stop().await;
    }
    dir.stop().await;
}

/// The routing function on the small network with its placeholder URLs: stable headers and
/// Metalink for snapshots.
fn fixed_table() -> (Table, Stats) {
    let network = Arc::new(load(&support::small_network()));
    let assignment = assign(&network, &Extras::new());
    let held: Held = network.catalogs[CATALOG]
        .live()
        .map(|a| ((CATALOG.to_owned(), a.path.as_str().to_owned()), a.sha256.0))
        .collect();
    let held = Arc::new(held);
    // Every relay (as if all worked with dir-a) holds every artifact.
    let healthy: Healthy =
        network.relays.keys().map(|n| (n.clone(), (held.clone(), Serves::DUAL))).collect();
    let view = Arc::new(View {
        commit: "0123abc".into(),
        network,
        assignment,
        extras: Extras::new(),
        applied_at: time::OffsetDateTime::UNIX_EPOCH,
    });
    let regions = RegionMap::new(
        &[
            ("10.1.0.0/16".parse().unwrap(), "eu".into()),
            ("10.2.0.0/16".parse().unwrap(), "us".into()),
        ],
        &[],
    );
    let stats = Stats::in_memory();
    let table = Table::build(&BuildInput {
        view: &view,
        me: "dir-a",
        healthy: &healthy,
        regions: &regions,
        stats: &stats,
        geo: &odi_agent::directory::geo::Geo::default(),
    });
    (table, stats)
}

fn headers_text(resp: &http::Response<odi_agent::http::Body>) -> String {
    let mut out = format!("{}\n", resp.status());
    for (k, v) in resp.headers() {
        out.push_str(&format!("{k}: {}\n", v.to_str().unwrap()));
    }
    out
}

#[test]
fn snapshot_redirect_headers_and_metalink() {
    let (table, _stats) = fixed_table();
    let regions = RegionMap::new(
        &[
            ("10.1.0.0/16".parse().unwrap(), "eu".into()),
            ("10.2.0.0/16".parse().unwrap(), "us".into()),
        ],
        &[],
    );
    let e = table.get(&format!("/r/{CATALOG}/releases/1.1/app-1.1.bin")).unwrap();
    let mut text = String::new();
    for (label, region) in [
        ("eu client", regions.id("eu")),
        ("us client", regions.id("us")),
        ("client of no region", None),
    ] {
        let (g, pos) = e.choose(region, 0.0, Serves::V4).unwrap();
        text.push_str(&format!(
            "## {label}\n{}\n",
            headers_text(&e.redirect(g, pos, 5, false, Serves::V4))
        ));
    }
    insta::assert_snapshot!("redirect_headers", text);
    let (g, pos) = e.choose(regions.id("eu"), 0.0, Serves::V4).unwrap();
    insta::assert_snapshot!(
        "redirect_headers_one_link",
        headers_text(&e.redirect(g, pos, 1, false, Serves::V4))
    );
    let doc = table
        .metalink(e, regions.id("us"), Serves::V4, None)
        .replace(env!("CARGO_PKG_VERSION"), "VERSION");
    insta::assert_snapshot!("metalink", doc);
}

/// A probe of a relay whose holdings did not change asks with `If-None-Match`, gets `304`
/// and keeps what it found before: the whole inventory body is not sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_inventory_is_not_sent_again() {
    use odi_agent::directory::probe::{probe, Previous, ProbeClients, ProbeSettings};
    let net = TestNet::small().await;
    let dir = net.start("dir-a").await;
    let _r1 = net.start("relay-1").await;
    let _r3 = net.start("relay-3").await;
    wait_routable(&net, "dir-a", &["relay-1", "relay-3"]).await;

    let view = dir.node.view().unwrap();
    let relay = view.network.relays["relay-1"].clone();
    let s = ProbeSettings { timeout: Duration::from_secs(10) };
    let clients = ProbeClients::new(s.timeout, &[]).unwrap();
    let store = &dir.node.store;
    let run = |prev: Previous| {
        let (clients, relay, view) = (&clients, &relay, &view);
        async move { probe(clients, relay, view, "dir-a", store, &prev, s).await }
    };
    let whole = run(Previous::default()).await;
    let first = whole.result.clone().unwrap();
    assert!(!first.held.is_empty());
    let known = first.inventory.clone().expect("the relay tags its inventory");

    // The same cursor, so both rounds make the same content checks.
    let same = run(Previous { cursor: 0, inventory: Some(known.clone()) }).await;
    let second = same.result.unwrap();
    assert!(Arc::ptr_eq(&second.held, &known.held), "the known list is kept, not re-read");
    assert_eq!((second.listed, second.commit.as_deref()), (first.listed, first.commit.as_deref()));
    let body = client()
        .get(format!("{}/.odi/v1/inventory", net.url("relay-1")))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .len() as u64;
    assert!(
        same.received + body <= whole.received + 64,
        "the 304 round ({} bytes) saves the inventory body ({body} bytes) of the whole one ({})",
        same.received,
        whole.received
    );

    // A list judged under another directory commit, or a tag the relay no longer has: read
    // whole again.
    let other_commit = KnownOr { against: "0".repeat(40), ..known.clone() };
    let stale_tag = KnownOr { etag: "\"stale\"".into(), ..known.clone() };
    for k in [other_commit, stale_tag] {
        let p = run(Previous { cursor: 0, inventory: Some(k) }).await.result.unwrap();
        assert!(!Arc::ptr_eq(&p.held, &known.held));
        assert_eq!(*p.held, *known.held);
    }
}

type KnownOr = odi_agent::directory::probe::KnownInventory;
