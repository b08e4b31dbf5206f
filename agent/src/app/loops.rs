//! The loops every agent runs, whatever its mode: following the repository (sync), making the
//! store match the applied view (reconcile), and re-hashing stored bytes (scrub).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use odi_network::units::Rate;
use tokio_util::sync::CancellationToken;

use super::Role;
use crate::config::OnExpiry;
use crate::fetch::{self, RateLimiter};
use crate::node::{jitter, lock, Node};
use crate::reconcile::{self, Fetcher, Outcome};
use crate::status::Expired;
use crate::sync::{Applied, Syncer};

/// Longest time between two looks at the applied commit's expiry, whatever the pull interval.
const EXPIRY_CHECK: Duration = Duration::from_secs(60);

/// Notices when the applied commit's snapshot or root has expired (a frozen or stale
/// repository, or a root nobody renewed) and applies the `on_expiry` policy: the status,
/// metrics and a log line say so either way.
pub(super) fn check_expiry(node: &Node) {
    let Some(view) = node.view() else { return };
    let (at, what) = view.network.expires();
    let m = &node.metrics;
    m.set(
        "odi_trust_expiry_timestamp_seconds",
        "When the applied commit's snapshot or root expires (Unix time).",
        &[],
        at.unix_timestamp() as f64,
    );
    let now = time::OffsetDateTime::now_utc();
    let expired = at <= now;
    m.set(
        "odi_trust_expired",
        "1 while the applied commit's trust has expired.",
        &[],
        f64::from(u8::from(expired)),
    );
    let mut health = node.health();
    let was = health.expired.is_some();
    if !expired {
        if was {
            tracing::info!("the applied commit's trust is fresh again");
        }
        health.expired = None;
        node.refusing.store(false, std::sync::atomic::Ordering::Relaxed);
        return;
    }
    let refusing = node.config.on_expiry == OnExpiry::Refuse;
    let doing = if refusing {
        "refusing artifact requests until a fresh commit arrives (on_expiry = \"refuse\")"
    } else {
        "still serving the last good state (on_expiry = \"serve\")"
    };
    let reason = if what == "snapshot" { "SnapshotExpired" } else { "RootExpired" };
    let message = format!("the applied commit's {what} expired at {at}; {doing}");
    if !was {
        tracing::warn!(reason, %message, "trust expired");
        health.error(message.clone());
    }
    health.expired = Some(Expired { reason, message, refusing });
    node.refusing.store(refusing, std::sync::atomic::Ordering::Relaxed);
}

/// Installs a commit the syncer applied, keeping the hot extras in force.
pub(super) async fn install_applied(node: &Arc<Node>, a: Applied) {
    let extras = node.view().map(|v| v.extras.clone()).unwrap_or_default();
    node.install(a.commit, a.network, extras, a.applied_at).await;
}

pub(super) async fn sync_loop(node: Arc<Node>, syncer: Syncer, shutdown: CancellationToken) {
    let syncer = Arc::new(Mutex::new(syncer));
    loop {
        let s = syncer.clone();
        let result = tokio::task::spawn_blocking(move || lock(&s).sync()).await;
        match result {
            Ok(Ok(Some(applied))) => {
                node.health().sync_error = None;
                node.metrics.inc(
                    "odi_sync_total",
                    "Repository syncs by outcome.",
                    &[("outcome", "applied")],
                    1.0,
                );
                install_applied(&node, applied).await;
            }
            Ok(Ok(None)) => {
                node.health().sync_error = None;
                node.metrics.inc(
                    "odi_sync_total",
                    "Repository syncs by outcome.",
                    &[("outcome", "unchanged")],
                    1.0,
                );
            }
            Ok(Err(e)) => {
                tracing::warn!(reason = e.reason(), error = %e, "sync failed; keeping the last good commit");
                node.metrics.inc(
                    "odi_sync_total",
                    "Repository syncs by outcome.",
                    &[("outcome", e.reason())],
                    1.0,
                );
                let mut h = node.health();
                h.sync_error = Some((e.reason().into(), e.to_string()));
                h.error(e.to_string());
            }
            Err(e) => tracing::error!(error = %e, "sync task panicked"),
        }
        check_expiry(&node);
        tokio::select! {
            () = tokio::time::sleep(jitter(node.config.pull_interval).min(EXPIRY_CHECK)) => {}
            () = node.sync_now.notified() => {}
            () = shutdown.cancelled() => return,
        }
    }
}

pub(super) async fn reconcile_loop(node: Arc<Node>, role: Role, shutdown: CancellationToken) {
    let mut retry = false;
    loop {
        let wait = if retry { node.config.retry_after } else { Duration::from_secs(3600) };
        tokio::select! {
            () = node.reconcile_now.notified() => {}
            // Rotted bytes were taken out of service: fetch them again.
            () = node.store.quarantined().notified() => {}
            () = tokio::time::sleep(jitter(wait)) => {}
            () = shutdown.cancelled() => return,
        }
        let Some(view) = node.view() else { continue };
        node.health().reconciling = true;
        let target = role.target(&view);
        let observe = |w: &reconcile::Want, r: Result<usize, &[fetch::FetchError]>| match r {
            Ok(i) => {
                node.metrics.inc(
                    "odi_fetch_total",
                    "Artifact downloads by outcome.",
                    &[("outcome", "ok")],
                    1.0,
                );
                node.metrics.inc(
                    "odi_fetch_bytes_total",
                    "Bytes of verified artifacts downloaded.",
                    &[],
                    w.size as f64,
                );
                tracing::info!(artifact = %w.label, source = %w.sources.get(i).map(|s| s.url.as_str()).unwrap_or(""), "stored");
            }
            Err(errs) => {
                for e in errs {
                    node.metrics.inc(
                        "odi_fetch_total",
                        "Artifact downloads by outcome.",
                        &[("outcome", e.reason())],
                        1.0,
                    );
                }
                tracing::warn!(artifact = %w.label, errors = ?errs.iter().map(ToString::to_string).collect::<Vec<_>>(), "download failed");
            }
        };
        // The relay file's bandwidth caps all of this round's downloads together.
        let bandwidth: Option<Rate> =
            view.network.relays.get(&node.config.name).and_then(|r| r.bandwidth);
        let fetcher = Fetcher {
            limiter: bandwidth.map(|b| Arc::new(RateLimiter::new(b.bytes_per_second))),
            ..node.fetcher.clone()
        };
        let outcome: Outcome = tokio::select! {
            o = reconcile::reconcile(&node.store, &target, &fetcher, &observe) => o,
            () = shutdown.cancelled() => return,
        };
        retry = !outcome.complete();
        node.metrics.inc(
            "odi_reconcile_total",
            "Reconcile rounds by outcome.",
            &[("outcome", if retry { "incomplete" } else { "complete" })],
            1.0,
        );
        let mut h = node.health();
        if let Some(f) = outcome.failed.first() {
            h.error(format!("{}: {}", f.artifact, f.message));
        }
        h.reconciling = false;
        h.last_round = Some((view.commit.clone(), outcome));
    }
}

pub(super) async fn scrub_loop(node: Arc<Node>, shutdown: CancellationToken) {
    let every = node.config.scrub_interval;
    if every.is_zero() {
        return;
    }
    loop {
        tokio::select! {
            () = tokio::time::sleep(jitter(every)) => {}
            () = shutdown.cancelled() => return,
        }
        let report = node.store.scrub(Duration::from_millis(1)).await;
        node.metrics.inc(
            "odi_scrub_quarantined_total",
            "Objects whose bytes no longer matched their hash.",
            &[],
            report.quarantined as f64,
        );
        if report.quarantined > 0 {
            node.health()
                .error(format!("scrub quarantined {} corrupted objects", report.quarantined));
            node.reconcile_now.notify_one();
        }
    }
}
