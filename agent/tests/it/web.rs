//! The pages in a real browser: Debian's Chromium, headless, driven by playwright-core
//! (`agent/tests/web/browse.mjs`) through a running network of a directory and two relays,
//! with an axe-core scan of every page and a screenshot of each under
//! `target/screenshots/` (kept as a CI artifact, never committed). Then a killed relay, as
//! the status page shows it.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::directory::wait_routable;
use crate::support::CATALOG;
use crate::testnet::{client, TestNet};

/// Where the browser script and its npm packages live (installed by ci/install-test-deps.sh).
fn web_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/web")
}

fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots")
}

/// The directory's probe interval in the test network (`testnet.rs` writes 300 ms).
const PROBE_INTERVAL: Duration = Duration::from_millis(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_work_in_chromium_pass_axe_and_show_a_killed_relay_as_unhealthy() {
    let web = web_dir();
    assert!(
        web.join("node_modules/playwright-core").is_dir()
            && web.join("node_modules/axe-core").is_dir()
            && std::path::Path::new("/usr/bin/chromium").exists(),
        "the browser tests need Chromium and the npm packages in {}: run ci/install-test-deps.sh",
        web.display()
    );
    let mut net = TestNet::small().await;
    // Repository text is escaped on every page; the browser script checks no dialog opens.
    net.builder.catalogs.get_mut(CATALOG).unwrap().description =
        "Demo catalog <script>alert(1)</script>".into();
    net.builder.catalogs.get_mut(CATALOG).unwrap().serial += 1;
    net.commit("a description with markup");
    let dir = net.start("dir-a").await;
    let r1 = net.start("relay-1").await;
    let r3 = net.start("relay-3").await;
    wait_routable(&net, "dir-a", &["relay-1", "relay-3"]).await;
    let base = format!("{}/", net.url("dir-a"));
    // A few downloads, so that the statistics have something to draw.
    let c = client();
    for _ in 0..3 {
        let r = c.get(format!("{base}r/{CATALOG}/hello.txt")).send().await.unwrap();
        assert_eq!(r.status(), 302);
    }
    if let odi_agent::app::Role::Directory(d) = &dir.role {
        d.tick_stats();
    }

    let shots = screenshots();
    let out = tokio::task::spawn_blocking({
        let (web, base, shots) = (web.clone(), base.clone(), shots.clone());
        move || {
            Command::new("node")
                .current_dir(&web)
                .arg("browse.mjs")
                .arg(&base)
                .arg(&shots)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "browser walk failed:\n{stdout}\n{stderr}");
    for page in ["landing", "catalog", "folder", "mirrorlist", "status", "relay", "statistics"] {
        assert!(stdout.contains(&format!("\"page\":\"{page}\"")), "{page} not visited:\n{stdout}");
        assert!(shots.join(format!("{page}.png")).is_file(), "no screenshot of {page}");
    }
    assert!(stdout.contains("\"download\""), "no download:\n{stdout}");

    // A killed relay shows as unhealthy on the status page within two probe intervals (plus
    // the time this test needs to ask, on a loaded machine).
    let killed = Instant::now();
    r1.stop().await;
    let grace = Duration::from_secs(2);
    let status = format!("{base}status");
    let seen = loop {
        let html = c.get(&status).send().await.unwrap().text().await.unwrap();
        let row =
            html.split("<tr id=\"relay-relay-1\">").nth(1).and_then(|r| r.split("</tr>").next());
        if row.is_some_and(|r| r.contains("unhealthy")) {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < 2 * PROBE_INTERVAL + grace,
            "relay-1 still not unhealthy on the status page after {:?}",
            killed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("relay-1 shown unhealthy {seen:?} after it stopped");
    r3.stop().await;
    dir.stop().await;
}
