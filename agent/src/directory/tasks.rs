//! A directory's background work: probing its relays and rebuilding the routing table from
//! what the probes found, keeping the table in step with the applied view, rolling and
//! flushing the download statistics, and publishing the hot list.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use odi_network::assign::Extras;
use odi_network::model::Relay;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::probe::{self, ProbeClients, ProbeSettings};
use super::route::{BuildInput, Healthy, Table};
use super::{federation, DirectoryMode};
use crate::node::{jitter, lock, View};
use crate::wire::{HotItem, HotList};

/// Relays probed at the same time.
const PROBE_CONCURRENCY: usize = 8;
/// How often the table is compared with the applied view.
const WATCH: Duration = Duration::from_millis(100);
/// How often counters are written to the embedded store.
const FLUSH_EVERY: Duration = Duration::from_secs(30);

/// Rebuilds the routing table from the applied view and the healthy relays, off the async
/// threads, and swaps it in. Serialised, so an older build never replaces a newer one.
pub async fn rebuild(dir: &Arc<DirectoryMode>) {
    let node = &dir.node;
    let _guard = dir.rebuild_lock.lock().await;
    let Some(view) = node.view() else { return };
    let healthy: Healthy = lock(&dir.relays)
        .iter()
        .filter(|(_, h)| h.healthy)
        .map(|(n, h)| (n.clone(), (h.held.clone(), h.families.serves())))
        .collect();
    let d = dir.clone();
    let built = tokio::task::spawn_blocking(move || {
        Table::build(&BuildInput {
            view: &view,
            me: &d.node.config.name,
            healthy: &healthy,
            regions: &d.regions,
            stats: &d.stats,
            geo: &d.geo,
        })
    })
    .await;
    match built {
        Ok(t) => {
            let routable = t.entries().iter().filter(|e| !e.candidates.is_empty()).count();
            node.metrics.set(
                "odi_routable_artifacts",
                "Artifacts with at least one healthy relay to redirect to.",
                &[],
                routable as f64,
            );
            node.metrics.set(
                "odi_routing_artifacts",
                "Artifacts in the routing table.",
                &[],
                t.entries().len() as f64,
            );
            dir.table.store(Arc::new(t));
        }
        Err(e) => {
            tracing::error!(error = %e, "routing table build panicked; keeping the previous table")
        }
    }
}

/// Directory background tasks: probing, keeping the table in step with the view, statistics.
pub fn spawn(
    dir: &Arc<DirectoryMode>,
    shutdown: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    vec![
        tokio::spawn(probe_loop(dir.clone(), shutdown.clone())),
        tokio::spawn(watch_loop(dir.clone(), shutdown.clone())),
        tokio::spawn(stats_loop(dir.clone(), shutdown.clone())),
        tokio::spawn(federation::probe_loop(
            dir.node.clone(),
            dir.federation.clone(),
            dir.probe_interval,
            shutdown.clone(),
        )),
    ]
}

async fn probe_loop(dir: Arc<DirectoryMode>, shutdown: CancellationToken) {
    let node = &dir.node;
    // Short enough that a dead relay costs little of a round, long enough for a loaded one.
    let timeout = dir.probe_interval.clamp(Duration::from_secs(2), Duration::from_secs(10));
    let client = match ProbeClients::new(timeout, &node.config.extra_roots) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the probe HTTP client; relays will not be probed");
            node.health().error(format!("probe client: {e}"));
            return;
        }
    };
    loop {
        // A MaxMind database replaced on disk is picked up here; the table rebuilt after the
        // round places relays with it. A file that does not load keeps the last good one.
        for e in dir.geo.reload_if_changed() {
            tracing::warn!(error = %e, "cannot reload a MaxMind database; keeping the last good one");
            node.health().error(format!("MaxMind database: {e}"));
        }
        if let Some(view) = node.view() {
            probe_round(&dir, &client, &view, ProbeSettings { timeout }).await;
        }
        tokio::select! {
            () = tokio::time::sleep(jitter(dir.probe_interval)) => {}
            () = dir.probe_now.notified() => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Probes every relay that works with this directory, updating health as answers come in;
/// a relay that fails is taken out of the table at once, the rest are applied after the round.
pub async fn probe_round(
    dir: &Arc<DirectoryMode>,
    client: &ProbeClients,
    view: &Arc<View>,
    settings: ProbeSettings,
) {
    let node = &dir.node;
    let me = node.config.name.as_str();
    let relays: Vec<&Relay> =
        view.network.relays.values().filter(|r| r.directories.iter().any(|d| d == me)).collect();
    let previous: HashMap<String, probe::Previous> = {
        let mut m = lock(&dir.relays);
        // Relays that left the network (or stopped working with this directory) are forgotten.
        m.retain(|n, _| relays.iter().any(|r| r.name == *n));
        m.iter()
            .map(|(n, h)| {
                (n.clone(), probe::Previous { cursor: h.cursor, inventory: h.inventory.clone() })
            })
            .collect()
    };
    // Boxed and collected first: a lazily mapped iterator of async blocks trips the
    // compiler's higher-ranked lifetime inference inside `tokio::spawn`.
    let probes: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = (&Relay, _)> + Send + '_>>> =
        relays
            .iter()
            .map(|&r| {
                let prev = previous.get(&r.name).cloned().unwrap_or_default();
                let fut: std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send + '_>> =
                    Box::pin(async move {
                        let store = &node.store;
                        (r, probe::probe(client, r, view, me, store, &prev, settings).await)
                    });
                fut
            })
            .collect();
    let mut results = futures_util::stream::iter(probes).buffer_unordered(PROBE_CONCURRENCY);
    let mut changed = false;
    while let Some((relay, outcome)) = results.next().await {
        let kind = outcome.result.as_ref().map_or_else(|e| e.kind(), |_| "ok");
        node.metrics.inc(
            "odi_probes_total",
            "Relay probes by relay and outcome.",
            &[("relay", &relay.name), ("outcome", kind)],
            1.0,
        );
        node.metrics.inc(
            "odi_probe_received_bytes_total",
            "Bytes received from relays by probes (status lines, headers and bodies).",
            &[("relay", &relay.name)],
            outcome.received as f64,
        );
        let families = outcome.families.clone();
        let (was, now_healthy, routing_changed, reason) = {
            let mut m = lock(&dir.relays);
            let h = m.entry(relay.name.clone()).or_default();
            let was = h.healthy;
            let c = h.record(outcome, OffsetDateTime::now_utc());
            (was, h.healthy, c, h.reason.clone())
        };
        for (family, reach) in [("ipv4", &families.v4), ("ipv6", &families.v6)] {
            if *reach != probe::Reach::Absent {
                node.metrics.set(
                    "odi_relay_family_up",
                    "1 when the relay passed its last probe over this address family.",
                    &[("relay", &relay.name), ("family", family)],
                    f64::from(u8::from(*reach == probe::Reach::Passed)),
                );
            }
        }
        match (was, now_healthy) {
            (true, false) => {
                tracing::warn!(relay = %relay.name, reason = reason.as_deref().unwrap_or(""), "relay failed its probe; no more redirects to it");
                // Out at once, before the rest of the round finishes.
                rebuild(dir).await;
            }
            (false, false) => {
                tracing::debug!(relay = %relay.name, reason = reason.as_deref().unwrap_or(""), "relay still unhealthy")
            }
            (false, true) => {
                tracing::info!(relay = %relay.name, "relay passed its probe; back in rotation")
            }
            (true, true) => {}
        }
        changed |= routing_changed && now_healthy;
    }
    let (healthy, total) = {
        let m = lock(&dir.relays);
        (m.values().filter(|h| h.healthy).count(), m.len())
    };
    node.metrics.set(
        "odi_relays_healthy",
        "Relays that passed their last probe.",
        &[],
        healthy as f64,
    );
    node.metrics.set("odi_relays_probed", "Relays this directory probes.", &[], total as f64);
    if changed {
        rebuild(dir).await;
    }
}

/// Keeps the table in step with the applied view; a new commit also triggers a probe round,
/// so relays that already hold its new artifacts get traffic without waiting a full interval.
async fn watch_loop(dir: Arc<DirectoryMode>, shutdown: CancellationToken) {
    let node = &dir.node;
    let mut commit: Option<String> = None;
    loop {
        if let Some(view) = node.view() {
            let built_for = dir.table.load().view.clone();
            if !built_for.is_some_and(|t| Arc::ptr_eq(&t, &view)) {
                if commit.as_deref() != Some(view.commit.as_str()) {
                    if commit.is_some() {
                        dir.probe_soon();
                    }
                    commit = Some(view.commit.clone());
                }
                rebuild(&dir).await;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(WATCH) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Moves new downloads into the window and writes the statistics to their store, off the
/// async threads.
pub async fn flush_stats(dir: &Arc<DirectoryMode>) {
    let node = &dir.node;
    dir.stats.tick(Instant::now());
    let d = dir.clone();
    match tokio::task::spawn_blocking(move || d.stats.flush()).await {
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot write download statistics");
            node.health().error(format!("statistics: {e}"));
        }
        Err(e) => tracing::error!(error = %e, "statistics flush panicked"),
        _ => {}
    }
}

/// Rolls the download window, publishes the hot list (re-installing the view with the extra
/// replicas, as relays do from the list), and flushes counters; a last flush at shutdown.
async fn stats_loop(dir: Arc<DirectoryMode>, shutdown: CancellationToken) {
    let tick = dir.probe_interval.clamp(Duration::from_millis(100), Duration::from_secs(5));
    let mut last_flush = Instant::now();
    loop {
        let stop = tokio::select! {
            () = tokio::time::sleep(tick) => false,
            () = shutdown.cancelled() => true,
        };
        if stop || last_flush.elapsed() >= FLUSH_EVERY {
            last_flush = Instant::now();
            flush_stats(&dir).await;
        } else {
            dir.stats.tick(Instant::now());
        }
        if stop {
            return;
        }
        update_hot(&dir).await;
    }
}

async fn update_hot(dir: &Arc<DirectoryMode>) {
    let node = &dir.node;
    let Some(view) = node.view() else { return };
    let Some(me) = view.network.directories.get(&node.config.name) else { return };
    let mut extras = Extras::new();
    let mut items = Vec::new();
    if dir.hot_extra > 0 {
        for ((c, p), _) in dir.stats.hot(dir.hot_threshold) {
            let live = me.catalogs.contains(&c)
                && view.network.artifact(&c, &p).is_some_and(|a| a.expunged.is_none());
            if live {
                extras.insert((c.clone(), p.clone()), dir.hot_extra);
                items.push(HotItem { catalog: c, path: p, extra: dir.hot_extra });
            }
        }
    }
    let list = HotList { commit: Some(view.commit.clone()), artifacts: items };
    if *dir.hot.load_full() != list {
        if list.artifacts.len() != dir.hot.load().artifacts.len() {
            tracing::info!(hot = list.artifacts.len(), "hot list changed");
        }
        dir.hot.store(Arc::new(list));
    }
    node.metrics.set(
        "odi_hot_artifacts",
        "Artifacts above the hot threshold in the last hour.",
        &[],
        extras.len() as f64,
    );
    if extras != view.extras {
        // The directory computes the same assignment as its relays, who add these extras
        // from the published list.
        node.install_extras(extras).await;
    }
}
