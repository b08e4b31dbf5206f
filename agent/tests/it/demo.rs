//! `odi demo` as a newcomer runs it: the real binary as a child process, driven only through
//! what it prints (node table, commands), downloads checked against the origin's bytes, a
//! printed relay killed with SIGKILL, and SIGTERM stopping every agent it started.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use odi_agent::demo::catalogs::{
    HELLO, HELLO_EXPUNGED, HELLO_LARGE, HELLO_MEDIUM, HELLO_README, HELLO_SMALL, PYPI,
    PYPI_PROJECT, WHEEL,
};
use odi_agent::demo::READY_LINE;

use crate::support;
use crate::testnet::reserve_port;

/// One row of the printed node table.
#[derive(Debug, Clone)]
struct Row {
    name: String,
    role: String,
    url: String,
    pid: u32,
}

/// The demo process; stopped (SIGTERM, then SIGKILL) if a test fails half-way, so that its
/// agents do not outlive the test.
struct Demo {
    child: Child,
    out: Arc<Mutex<Vec<String>>>,
    stderr: std::path::PathBuf,
}

impl Demo {
    fn start(dir: &Path, listen: &str, stderr: &Path) -> Self {
        Self::start_with(dir, listen, stderr, &[])
    }

    fn start_with(dir: &Path, listen: &str, stderr: &Path, extra: &[&str]) -> Self {
        let mut child = support::odi()
            .arg("demo")
            .arg("--dir")
            .arg(dir)
            .arg("--listen")
            .arg(listen)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(stderr).unwrap())
            .spawn()
            .unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        let sink = out.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Demo { child, out, stderr: stderr.to_owned() }
    }

    fn output(&self) -> String {
        let stderr = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        format!("--- stdout\n{}\n--- stderr\n{stderr}", self.out.lock().unwrap().join("\n"))
    }

    /// Waits for the ready line; returns stdout so far.
    async fn wait_ready(&mut self, timeout: Duration) -> Vec<String> {
        let start = Instant::now();
        loop {
            let lines = self.out.lock().unwrap().clone();
            if lines.iter().any(|l| l == READY_LINE) {
                return lines;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("odi demo exited early ({status}):\n{}", self.output());
            }
            assert!(
                start.elapsed() < timeout,
                "odi demo not ready after {timeout:?}:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            signal("-TERM", self.child.id());
            let start = Instant::now();
            while matches!(self.child.try_wait(), Ok(None))
                && start.elapsed() < Duration::from_secs(30)
            {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn signal(sig: &str, pid: u32) -> bool {
    Command::new("kill")
        .arg(sig)
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn alive(pid: u32) -> bool {
    signal("-0", pid)
}

/// The node table: rows whose second column is a role and fourth a URL.
fn rows(lines: &[String]) -> Vec<Row> {
    lines
        .iter()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let ok = cols.len() >= 5
                && ["origin", "meta-directory", "directory", "relay"].contains(&cols[1])
                && (cols[3].starts_with("http://") || cols[3].starts_with("https://"));
            let pid = cols.get(4)?.parse().ok()?;
            ok.then(|| Row { name: cols[0].into(), role: cols[1].into(), url: cols[3].into(), pid })
        })
        .collect()
}

fn follow() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(5))
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// GETs `url` following redirects; the bytes on success.
async fn fetch(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, String> {
    let r = client.get(url).send().await.map_err(|e| format!("{url}: {e}"))?;
    if !r.status().is_success() {
        return Err(format!("{url}: HTTP {} from {}", r.status(), r.url()));
    }
    r.bytes().await.map(|b| b.to_vec()).map_err(|e| format!("{url}: {e}"))
}

/// Downloads every live `hello` file through `base` and compares with the origin's bytes.
async fn hello_round(client: &reqwest::Client, base: &str, origin: &Path) -> Result<(), String> {
    for f in [HELLO_README, HELLO_SMALL, HELLO_MEDIUM, HELLO_LARGE] {
        let got = fetch(client, &format!("{base}r/{HELLO}/{f}")).await?;
        let want = std::fs::read(origin.join(HELLO).join(f)).unwrap();
        if got != want {
            return Err(format!(
                "{f}: {} bytes that differ from the origin's {}",
                got.len(),
                want.len()
            ));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_survives_a_killed_relay_and_stops_every_node() {
    let _heavy = crate::support::HEAVY.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let port = reserve_port();
    let mut demo = Demo::start(&dir, &format!("127.0.0.1:{port}"), &tmp.path().join("demo.stderr"));
    let lines = demo.wait_ready(Duration::from_secs(240)).await;
    let ctx = demo.output();

    // What a person sees: six agents with distinct live pids, and an entry point at --listen.
    let nodes: Vec<Row> = rows(&lines).into_iter().filter(|r| r.role != "origin").collect();
    assert_eq!(nodes.len(), 6, "{ctx}");
    assert_eq!(nodes.iter().filter(|r| r.role == "meta-directory").count(), 1, "{ctx}");
    assert_eq!(nodes.iter().filter(|r| r.role == "directory").count(), 2, "{ctx}");
    assert_eq!(nodes.iter().filter(|r| r.role == "relay").count(), 3, "{ctx}");
    assert!(nodes.iter().all(|r| alive(r.pid)), "{ctx}");
    let curl = lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("curl -L -O "))
        .unwrap_or_else(|| panic!("no `curl -L -O` line:\n{ctx}"));
    let entry = format!("http://127.0.0.1:{port}/");
    assert!(curl.starts_with(&format!("{entry}r/{HELLO}/")), "{curl}");
    // The first thing printed is the landing page, to open in a browser; it is a page.
    let first = lines
        .iter()
        .skip_while(|l| !l.starts_with("Starting "))
        .skip(1)
        .find(|l| !l.trim().is_empty())
        .cloned()
        .unwrap_or_default();
    assert_eq!(first, format!("Open in a browser: {entry}"), "{ctx}");
    let landing = follow().get(&entry).send().await.unwrap();
    assert!(landing.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = landing.text().await.unwrap();
    assert!(html.contains(&format!("href=\"/r/{HELLO}/\"")), "the landing page lists {HELLO}");

    let client = follow();
    let origin = dir.join("origin");
    // A directory the demo printed redirects to a relay the demo printed, once it has probed
    // them.
    let relays: Vec<&str> =
        nodes.iter().filter(|r| r.role == "relay").map(|r| r.url.as_str()).collect();
    let directory = nodes.iter().find(|r| r.role == "directory").unwrap().url.clone();
    let no_follow = crate::testnet::client();
    let start = Instant::now();
    loop {
        let r = no_follow.get(format!("{directory}r/{HELLO}/{HELLO_LARGE}")).send().await.unwrap();
        let location = r
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if r.status() == reqwest::StatusCode::FOUND
            && relays.iter().any(|u| location.starts_with(u))
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no redirect to a relay yet: {} {location}\n{ctx}",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Everything else goes through the entry point, as a person would: the printed `curl -L`
    // URL gives the origin's bytes after the meta-directory -> directory -> relay redirects.
    let base = entry.as_str();
    // The meta-directory probes its directories every 2s; give it a few rounds.
    let start = Instant::now();
    let printed = loop {
        match fetch(&client, curl).await {
            Ok(bytes) => break bytes,
            Err(e) => assert!(start.elapsed() < Duration::from_secs(20), "{e}\n{ctx}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(printed, std::fs::read(origin.join(HELLO).join(HELLO_LARGE)).unwrap(), "{curl}");
    hello_round(&client, base, &origin).await.unwrap_or_else(|e| panic!("{e}\n{ctx}"));

    // The printed aria2c line, run as printed (plus a folder and a log): the Metalink passes
    // through the meta-directory, and pieces come from more than one relay. First, until the
    // directory has both holders healthy (probes on a loaded machine can miss a round), the
    // Metalink must list at least two.
    let meta4 = format!("{base}r/{HELLO}/{HELLO_LARGE}.meta4");
    let start = Instant::now();
    loop {
        let doc = client.get(&meta4).send().await.unwrap().text().await.unwrap();
        if doc.matches("<url").count() >= 2 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the Metalink lists one relay:\n{doc}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let aria = lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("aria2c "))
        .and_then(|l| l.split("   #").next())
        .unwrap_or_else(|| panic!("no aria2c line:\n{ctx}"));
    let out = tmp.path().join("aria2");
    std::fs::create_dir_all(&out).unwrap();
    let mut c = Command::new("aria2c");
    c.args(aria.split_whitespace())
        .args(["--no-conf", "--max-download-limit=4M", "--log-level=info", "--log=-"])
        .arg("-d")
        .arg(&out)
        .env_remove("http_proxy");
    let run = tokio::task::spawn_blocking(move || c.output().unwrap()).await.unwrap();
    let log = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(run.status.success(), "{aria}:\n{log}");
    assert_eq!(
        std::fs::read(out.join(HELLO_LARGE)).unwrap(),
        std::fs::read(origin.join(HELLO).join(HELLO_LARGE)).unwrap()
    );
    let used: Vec<&Row> = nodes
        .iter()
        .filter(|r| r.role == "relay")
        .filter(|r| {
            let port = r.url.trim_end_matches('/').rsplit(':').next().unwrap_or("");
            log.contains(&format!("Connecting to 127.0.0.1:{port}"))
                || log.contains(&format!("Connecting to localhost:{port}"))
        })
        .collect();
    assert!(
        used.len() >= 2,
        "aria2 used relays {:?}:\n{log}",
        used.iter().map(|r| &r.name).collect::<Vec<_>>()
    );

    // `curl -sI` at the entry point: the meta-directory's own redirect carries the digests.
    let head = Command::new("curl")
        .args(["-sI", &format!("{base}r/{HELLO}/{HELLO_LARGE}")])
        .env_remove("http_proxy")
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&head.stdout).to_ascii_lowercase();
    assert!(
        head.starts_with("http/1.1 302") && head.contains("\r\nrepr-digest: sha-256=:"),
        "{head}"
    );
    // `?mirrorlist` through the entry point, as JSON: the owning directory lists the relays.
    let list =
        crate::testnet::get_json(client.get(format!("{base}r/{HELLO}/{HELLO_LARGE}?mirrorlist")))
            .await;
    let listed: Vec<&str> =
        list["relays"].as_array().unwrap().iter().filter_map(|r| r["relay"].as_str()).collect();
    let demo_relays: Vec<&str> =
        nodes.iter().filter(|r| r.role == "relay").map(|r| r.name.as_str()).collect();
    assert!(
        !listed.is_empty() && listed.iter().all(|n| demo_relays.contains(n)),
        "mirror list {list}"
    );

    let gone = client.get(format!("{base}r/{HELLO}/{HELLO_EXPUNGED}")).send().await.unwrap();
    assert_eq!(gone.status(), reqwest::StatusCode::GONE);

    // pip asks for `<index>/<project>/`: a folder URL answered with its index.html, whose
    // relative link leads to the wheel.
    let page = client.get(format!("{base}r/{PYPI}/simple/{PYPI_PROJECT}/")).send().await.unwrap();
    assert_eq!(page.status(), reqwest::StatusCode::OK, "{}", page.url());
    assert!(page.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page_url = page.url().clone();
    let html = page.text().await.unwrap();
    let href = html
        .split("href=\"")
        .nth(1)
        .and_then(|h| h.split('"').next())
        .unwrap_or_else(|| panic!("no link in {html}"));
    let wheel_url = page_url.join(href).unwrap();
    assert!(wheel_url.path().ends_with(&format!("/r/{PYPI}/packages/{WHEEL}")), "{wheel_url}");
    let wheel = fetch(&client, wheel_url.as_str()).await.unwrap();
    assert_eq!(wheel, std::fs::read(origin.join(PYPI).join("packages").join(WHEEL)).unwrap());

    // Kill a relay the demo printed: after at most a few probe intervals every download works
    // again, and keeps working.
    let victim = nodes.iter().find(|r| r.role == "relay").unwrap().clone();
    assert!(signal("-KILL", victim.pid));
    let start = Instant::now();
    let mut streak = 0;
    while streak < 3 {
        match hello_round(&client, base, &origin).await {
            Ok(()) => streak += 1,
            Err(e) => {
                streak = 0;
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "downloads still failing 30s after killing {}: {e}\n{}",
                    victim.name,
                    demo.output()
                );
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
    for _ in 0..5 {
        hello_round(&client, base, &origin)
            .await
            .unwrap_or_else(|e| panic!("after killing {}: {e}\n{}", victim.name, demo.output()));
    }

    // SIGTERM: the demo stops every agent, waits for them and exits 0, keeping --dir.
    assert!(signal("-TERM", demo.child.id()));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = demo.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "odi demo still running 60s after SIGTERM:\n{}",
            demo.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "odi demo exited with {status}:\n{}", demo.output());
    for r in &nodes {
        assert!(!alive(r.pid), "{} (pid {}) outlived the demo", r.name, r.pid);
    }
    assert!(
        dir.join("network").join(".git").is_dir()
            && dir.join("keys").join("maintainer.key").is_file()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_over_tls_with_its_own_ca() {
    let _heavy = crate::support::HEAVY.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let port = reserve_port();
    let mut demo = Demo::start_with(
        &dir,
        &format!("127.0.0.1:{port}"),
        &tmp.path().join("demo.stderr"),
        &["--tls"],
    );
    let lines = demo.wait_ready(Duration::from_secs(240)).await;
    let ctx = demo.output();
    let ca = dir.join("ca.pem");
    assert!(ca.exists(), "{ctx}");
    let nodes: Vec<Row> = rows(&lines).into_iter().filter(|r| r.role != "origin").collect();
    assert_eq!(nodes.len(), 6, "{ctx}");
    assert!(nodes.iter().all(|r| r.url.starts_with("https://127.0.0.1:")), "{ctx}");
    let entry = format!("https://127.0.0.1:{port}/");
    // The printed `curl --cacert DIR/ca.pem -L -O` line, run as printed in a folder of its own:
    // meta-directory, directory and relay over HTTPS, all verified against the demo CA.
    let printed = lines
        .iter()
        .map(|l| l.trim())
        .find(|l| l.starts_with("curl --cacert ") && l.contains(" -L -O "))
        .unwrap_or_else(|| panic!("no `curl --cacert ... -L -O` line:\n{ctx}"));
    assert!(printed.contains(&format!("--cacert {}", ca.display())), "{printed}");
    let words: Vec<&str> = printed.split_whitespace().collect();
    let url = *words.last().unwrap();
    assert!(url.starts_with(&format!("{entry}r/{HELLO}/")), "{printed}");
    let out = tmp.path().join("download");
    std::fs::create_dir_all(&out).unwrap();
    let file = out.join(url.rsplit('/').next().unwrap());
    let origin = dir.join("origin").join(HELLO).join(file.file_name().unwrap());
    let start = Instant::now();
    loop {
        let _ = std::fs::remove_file(&file);
        let r = Command::new(words[0])
            .args(["-sS", "--fail"])
            .args(&words[1..])
            .current_dir(&out)
            .env_remove("https_proxy")
            .output()
            .unwrap();
        if r.status.success() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{printed}: {}\n{ctx}",
            String::from_utf8_lossy(&r.stderr)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(std::fs::read(&file).unwrap(), std::fs::read(&origin).unwrap(), "{printed}");
    // Every hop answers with HSTS, over HTTP/2 when asked.
    let head = Command::new("curl")
        .args(["-sSI", "--http2", "--cacert"])
        .arg(&ca)
        .arg(url)
        .env_remove("https_proxy")
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&head.stdout).to_ascii_lowercase();
    assert!(head.starts_with("http/2 302"), "{head}");
    assert!(head.contains("strict-transport-security: max-age=31536000"), "{head}");
    assert!(
        head.contains("location: https://127.0.0.1:"),
        "HTTPS clients go to HTTPS nodes: {head}"
    );
    // testssl.sh against a relay: nothing of MEDIUM or above but what a local CA causes (a
    // chain to a root no system trusts, and no CRL or OCSP responder for it).
    let relay = nodes.iter().find(|r| r.role == "relay").unwrap();
    let report = tmp.path().join("testssl.json");
    let r = Command::new("testssl")
        .args(["--quiet", "--color", "0", "--ip", "one", "--warnings", "batch", "--jsonfile"])
        .arg(&report)
        .arg(&relay.url)
        .output()
        .expect("testssl (Debian package testssl.sh; ci/install-test-deps.sh installs it)");
    let findings: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&report).unwrap_or_default()).unwrap_or_else(|e| {
            panic!("no testssl report ({e}): {}", String::from_utf8_lossy(&r.stdout))
        });
    let local_ca = ["cert_chain_of_trust", "cert_revocation"];
    let serious: Vec<String> = findings
        .iter()
        .filter(|f| matches!(f["severity"].as_str(), Some("MEDIUM" | "HIGH" | "CRITICAL")))
        .filter(|f| !local_ca.contains(&f["id"].as_str().unwrap_or("")))
        .map(|f| format!("{} {}: {}", f["severity"], f["id"], f["finding"]))
        .collect();
    assert!(serious.is_empty(), "testssl findings against {}: {serious:#?}", relay.url);
    let hsts = findings.iter().find(|f| f["id"] == "HSTS_time").map(|f| f["finding"].to_string());
    assert!(hsts.as_deref().is_some_and(|h| h.contains("31536000")), "HSTS: {hsts:?}");
    // The printed trust instructions name the CA for curl, pip and apt.
    let text = lines.join("\n");
    for want in ["CURL_CA_BUNDLE=", "PIP_CERT=", "Acquire::https::CAInfo"] {
        assert!(text.contains(want), "no {want} in:\n{ctx}");
    }
}
