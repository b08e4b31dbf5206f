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
