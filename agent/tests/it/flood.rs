//! Floods of idle connections: thousands of connections that never send a byte, reopened as
//! they close, must not keep a normal client from its answer. Bounded in count (5,000
//! connections, 20 probes per agent) and in time (a few seconds of flood per agent).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use odi_agent::http::testing::{connect_from, exchange};
use tokio::io::AsyncReadExt as _;
use tokio_util::sync::CancellationToken;

use crate::testnet::TestNet;

/// Connections the flood holds open.
const FLOOD: usize = 5_000;
/// How long each normal request may take, flood or not.
const BOUND: Duration = Duration::from_secs(1);
/// Normal requests made during a flood.
const PROBES: usize = 20;

/// Keeps `FLOOD` silent connections to `target` open from `sources` (round robin), reopening
/// each one shortly after the server closes it, until `stop`. Counts reopenings.
fn flood(
    target: SocketAddr,
    sources: usize,
    stop: &CancellationToken,
) -> (Arc<AtomicU64>, Arc<AtomicU64>) {
    let reopened = Arc::new(AtomicU64::new(0));
    let open = Arc::new(AtomicU64::new(0));
    for i in 0..FLOOD {
        let src = IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1 + (i % sources) as u8));
        let (stop, reopened, open) = (stop.clone(), reopened.clone(), open.clone());
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                if let Ok(mut s) = connect_from(src, target).await {
                    open.fetch_add(1, Ordering::Relaxed);
                    let mut buf = [0u8; 64];
                    let stopped = tokio::select! {
                        _ = async { while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {} } => false,
                        () = stop.cancelled() => true,
                    };
                    open.fetch_sub(1, Ordering::Relaxed);
                    if stopped {
                        return;
                    }
                    reopened.fetch_add(1, Ordering::Relaxed);
                }
                // Reopen soon, but do not spin: the point is holding slots, not a SYN flood
                // (thousands of refused reconnections a second would only measure the CPU of a
                // 2-core machine that runs other tests at the same time).
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        });
    }
    (reopened, open)
}

/// Makes `PROBES` normal requests from 127.0.0.1 while the flood runs; each must be answered
/// within `BOUND`.
async fn probe(addr: SocketAddr, what: &str, request: &str) {
    for i in 0..PROBES {
        let t0 = Instant::now();
        let r = tokio::time::timeout(BOUND, exchange(addr, request)).await;
        let took = t0.elapsed();
        let r = r.unwrap_or_else(|_| panic!("{what}: probe {i} not answered within {BOUND:?}"));
        assert!(r.status < 500, "{what}: probe {i}: {} after {took:?}", r.status);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

async fn under_flood(net: &TestNet, name: &str, sources: usize, request: &str) {
    let addr = net.addr(name);
    let stop = CancellationToken::new();
    let (reopened, open) = flood(addr, sources, &stop);
    // Let the flood take what it can before measuring. What the server holds at once is
    // bounded by its limits (128 per address, 4,096 in all): most of that must be taken.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let expected = FLOOD.min(sources * 128).min(4096) as u64;
    let held = open.load(Ordering::Relaxed);
    assert!(
        held >= expected / 2,
        "{name}: only {held} flood connections open at once, {expected} possible"
    );
    probe(addr, name, request).await;
    stop.cancel();
    assert!(
        reopened.load(Ordering::Relaxed) > 0,
        "{name}: the server never closed a silent connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_floods_do_not_starve_real_clients() {
    let _heavy = crate::support::HEAVY.lock().await;
    let net = TestNet::small().await;
    let dir = net.start("dir-a").await;
    let relay = net.start("relay-1").await;
    let artifact = format!("/r/{}/hello.txt", crate::support::CATALOG);
    // 50 source addresses of 100 connections each: under the per-address limit, over the
    // directory's connection limit, so room is made by closing the oldest silent connections.
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    under_flood(&net, "dir-a", 50, &get(&artifact)).await;
    // 10 addresses of 500 each: the per-address limit refuses most at once.
    under_flood(&net, "relay-1", 10, &get(&artifact)).await;
    relay.stop().await;
    dir.stop().await;
}

/// RSS of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A thousand clients that read a large artifact slowly (slowhttptest's slow-read mode, a
/// one-byte-at-a-time TCP window) cost a relay little memory: on plain HTTP the bytes go by
/// `sendfile`, so a stalled reader holds no buffer of the relay's. Its RSS stays within
/// 64 MiB of its idle figure, and falls back (to within 8 MiB) once they have gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_readers_cost_a_relay_no_buffers() {
    let _heavy = crate::support::HEAVY.lock().await;
    let big: Vec<u8> =
        (0..32u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let mut builder = crate::support::small_network();
    let catalog = builder.catalogs.get_mut(crate::support::CATALOG).unwrap();
    catalog.artifacts.push(crate::support::entry("big/slow.bin", &big));
    catalog.serial += 1;
    builder.relays.get_mut("relay-3").unwrap().quota = "256 MiB".parse().unwrap();
    let mut files = crate::support::artifact_bytes();
    files.push(("big/slow.bin".into(), big));
    let net = TestNet::new(builder, files).await;
    // Every slow reader comes from 127.0.0.1: lift the per-address limit, as behind a proxy.
    let config = net.config_file("relay-3");
    let text = std::fs::read_to_string(&config).unwrap().replacen(
        "\n\n[repository]",
        "\nmax_connections_per_address = 0\n\n[repository]",
        1,
    );
    std::fs::write(&config, text).unwrap();
    let log = std::fs::File::create(net.data_dir("relay-3").join("agent.log")).unwrap();
    let mut child = crate::support::odi()
        .arg("agent")
        .arg("--config")
        .arg(&config)
        .stderr(log)
        .spawn()
        .unwrap();
    let base = net.url("relay-3");
    let url = format!("{base}/r/{}/big/slow.bin", crate::support::CATALOG);
    let c = crate::testnet::client();
    crate::testnet::eventually(
        "relay-3 serves the big artifact",
        Duration::from_secs(60),
        || async { c.head(&url).send().await.is_ok_and(|r| r.status() == 200) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = child.id();
    let idle = rss_kib(pid);
    // 1,000 connections at 500 a second, each reading 32 bytes every 2 s through a 32-byte
    // window, for 20 s; the probe connection checks the relay still answers.
    let mut slow = tokio::process::Command::new("slowhttptest")
        .args(["-X", "-c", "1000", "-r", "500", "-w", "32", "-y", "64", "-n", "2", "-z", "32"])
        .args(["-k", "2", "-l", "20", "-p", "5", "-u", &url])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("slowhttptest (Debian package slowhttptest; ci/install-test-deps.sh installs it)");
    let mut peak = idle;
    let mut open_peak = 0usize;
    let done = loop {
        tokio::select! {
            r = slow.wait() => break r.unwrap(),
            () = tokio::time::sleep(Duration::from_millis(250)) => {
                peak = peak.max(rss_kib(pid));
                let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
                open_peak = open_peak.max(fds);
            }
        }
    };
    assert!(done.success(), "slowhttptest failed: {done}");
    assert!(open_peak > 900, "the slow readers were connected at once ({open_peak} descriptors)");
    // Gone: the relay still answers normally, and its memory is back near idle.
    let r = c.get(&url).header("range", "bytes=0-99").send().await.unwrap();
    assert_eq!(r.status(), 206);
    // jemalloc's background threads purge freed pages after its decay time (10 s, then 10 s
    // more for "muzzy" pages): RSS falls back within that, not at once.
    let gone = Instant::now();
    let mut after = rss_kib(pid);
    while after > idle + 8 * 1024 && gone.elapsed() < Duration::from_secs(45) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        after = rss_kib(pid);
    }
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    assert!(fds < 100, "connections closed after the readers left ({fds} descriptors)");
    let _ = std::process::Command::new("kill").arg(pid.to_string()).status();
    let _ = child.wait();
    let mib = |k: u64| k as f64 / 1024.0;
    let (idle, peak, after) = (mib(idle), mib(peak), mib(after));
    eprintln!(
        "relay RSS idle {idle:.1} MiB, peak {peak:.1} MiB, {after:.1} MiB after {:?}",
        gone.elapsed()
    );
    assert!(peak <= idle + 64.0, "peak RSS {peak:.1} MiB, idle {idle:.1} MiB");
    assert!(after <= idle + 8.0, "RSS {after:.1} MiB 45 s after, idle {idle:.1} MiB");
}
