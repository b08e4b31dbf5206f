//! What an agent reports about itself: the `/.odi/v1/status` document (a wire format that
//! `odi status` and directories read), built from the agent's health record, with the
//! conditions Ready, Reconciling and Stalled in the style of Kubernetes conditions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::reconcile::{Failure, Outcome};

/// One Kubernetes-style condition; every document carries all three kinds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    /// `Ready`, `Reconciling` or `Stalled`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Whether it holds.
    pub status: bool,
    /// CamelCase reason, stable for alerting.
    pub reason: String,
    /// Detail for people, like the first failed download; alert on `reason`, not on this.
    pub message: String,
}

/// What the node's disk holds now, from the store's index (compare [`ShareStatus`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStatus {
    /// Verified objects under `objects/`; partial downloads are not counted.
    pub objects: usize,
    /// Sum of those objects' sizes in bytes.
    pub bytes: u64,
    /// Bytes of downloads in progress.
    pub partial_bytes: u64,
    /// The quota, for relays.
    pub quota: Option<u64>,
}

/// What the node should hold at the applied commit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareStatus {
    /// Live artifacts assigned to this relay, or in this directory's catalogs.
    pub artifacts: usize,
    /// Sum of their sizes in bytes, from the catalogs, whether stored or not.
    pub bytes: u64,
    /// Wanted but not stored.
    pub missing: usize,
}

/// `GET /.odi/v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusDoc {
    /// `relay` or `directory`.
    pub mode: String,
    /// The node's name in the network repository, from its configuration.
    pub name: String,
    /// The agent's crate version (`CARGO_PKG_VERSION`).
    pub version: String,
    /// Full hex id of the commit the node serves; `None` until one has been verified.
    pub commit: Option<String>,
    /// When it was applied (RFC 3339).
    pub applied_at: Option<String>,
    /// Ready, Reconciling, Stalled.
    pub conditions: Vec<Condition>,
    /// The last error of any kind, for people.
    pub last_error: Option<String>,
    /// What the node's disk holds now.
    pub store: StoreStatus,
    /// What it should hold at the applied commit, and how much of that is missing.
    pub share: ShareStatus,
    /// Downloads that failed in the last round.
    #[serde(default)]
    pub failures: Vec<Failure>,
    /// Directory mode: relays, peers and federation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<DirectoryStatus>,
}

/// The directory section of a status document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DirectoryStatus {
    /// This directory's region, from its directory file.
    pub region: Option<String>,
    /// Catalogs it holds whole.
    pub catalogs: Vec<String>,
    /// Directories it syncs bytes with.
    pub links: Vec<String>,
    /// Directories it sends clients to for catalogs it does not hold.
    pub references: Vec<String>,
    /// `directory` or `meta`; `None` when this directory is not in the applied network.
    pub kind: Option<String>,
    /// What the last probe found about each linked or referenced directory.
    pub peers: BTreeMap<String, PeerHealth>,
    /// Every relay that works with this directory, healthy or not.
    pub relays: Vec<RelayEntry>,
    /// The routing table clients are answered from.
    pub routing: RoutingStatus,
    /// Artifacts on the published hot list.
    pub hot: usize,
    /// Downloads counted since the statistics store was created.
    pub downloads: u64,
}

/// One relay as a directory sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayEntry {
    /// The relay's name in the network repository.
    pub name: String,
    /// Its public URL.
    pub url: String,
    /// Its region, from its relay file.
    pub region: String,
    /// Whether clients are sent there now.
    pub healthy: bool,
    /// Why not (or `not probed yet`); `None` when healthy.
    pub reason: Option<String>,
    /// When it was last probed (RFC 3339).
    pub last_probe: Option<String>,
    /// When it last passed a probe (RFC 3339).
    pub last_healthy: Option<String>,
    /// The commit its status reported.
    pub commit: Option<String>,
    /// It reported another commit than this directory's.
    pub lagging: bool,
    /// Artifacts its inventory listed.
    pub artifacts_listed: usize,
    /// Of those, the ones that match this directory's catalogs and are routed to it.
    pub artifacts_held: usize,
    /// Content checks it has passed since it became healthy.
    pub content_checks: usize,
    /// Bytes in its store at the last answer to a probe.
    #[serde(default)]
    pub stored_bytes: Option<u64>,
    /// Its quota, as it reported it.
    #[serde(default)]
    pub quota: Option<u64>,
    /// Its last probe over IPv4: `passed` or `failed: <why>`; `None` when not probed over
    /// IPv4 (its URL is an IPv6 address, or its name has no IPv4 address).
    #[serde(default)]
    pub ipv4: Option<String>,
    /// The same over IPv6. IPv6 clients are sent only to relays that passed over IPv6, and
    /// IPv4 clients likewise.
    #[serde(default)]
    pub ipv6: Option<String>,
    /// Bytes received from it by the last probe (status lines, headers, bodies): small when
    /// its inventory was unchanged and answered `304 Not Modified`.
    #[serde(default)]
    pub probe_bytes: u64,
}

/// The routing table's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingStatus {
    /// The commit the table was built for.
    pub commit: Option<String>,
    /// Built for the applied commit (false for a moment after each new commit).
    pub current: bool,
    /// Artifacts in the table.
    pub artifacts: usize,
    /// Of those, the ones with at least one healthy relay.
    pub routable: usize,
}

/// What a probe found about a linked or referenced directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerHealth {
    /// Whether clients may be sent there.
    pub live: bool,
    /// Reachable, but serving an older commit than this directory's.
    pub lagging: bool,
    /// CamelCase reason with detail (`Live`, `Unreachable: ...`, `Lagging: ...`).
    pub reason: String,
    /// Its applied commit.
    pub commit: Option<String>,
    /// When it was last probed (RFC 3339).
    pub checked_at: Option<String>,
}

impl StatusDoc {
    /// Whether the Ready condition holds.
    pub fn ready(&self) -> bool {
        self.conditions.iter().any(|c| c.kind == "Ready" && c.status)
    }
}

/// The agent's mutable health record.
#[derive(Debug, Default)]
pub struct Health {
    /// Last sync error: (reason, message).
    pub sync_error: Option<(String, String)>,
    /// A reconcile round is running.
    pub reconciling: bool,
    /// The last round's outcome and the commit it reconciled.
    pub last_round: Option<(String, Outcome)>,
    /// Last error of any kind.
    pub last_error: Option<(OffsetDateTime, String)>,
    /// Set while the applied commit's snapshot or root has expired.
    pub expired: Option<Expired>,
}

/// The applied commit's trust has run out, and what the agent does about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    /// `SnapshotExpired` or `RootExpired`.
    pub reason: &'static str,
    /// For people: what expired when, and what the agent does now.
    pub message: String,
    /// Artifact requests are refused (`on_expiry = "refuse"`).
    pub refusing: bool,
}

impl Health {
    /// Records an error for `last_error`.
    pub fn error(&mut self, message: String) {
        self.last_error = Some((OffsetDateTime::now_utc(), message));
    }

    /// The three conditions, given the applied commit.
    pub fn conditions(&self, commit: Option<&str>) -> Vec<Condition> {
        let c = |kind: &str, status: bool, reason: &str, message: String| Condition {
            kind: kind.into(),
            status,
            reason: reason.into(),
            message,
        };
        let round_for_commit =
            self.last_round.as_ref().filter(|(rc, _)| Some(rc.as_str()) == commit).map(|(_, o)| o);
        let ready = match (commit, round_for_commit) {
            _ if self.expired.as_ref().is_some_and(|e| e.refusing) => {
                let e = self.expired.as_ref().map(|e| e.message.clone()).unwrap_or_default();
                c("Ready", false, "TrustExpired", e)
            }
            (None, _) => c("Ready", false, "NoCommit", "no verified commit applied yet".into()),
            (Some(_), None) => {
                c("Ready", false, "Reconciling", "reconciling the applied commit".into())
            }
            (Some(_), Some(o)) if o.complete() => c(
                "Ready",
                true,
                "Reconciled",
                format!(
                    "{} artifacts held, {} skipped for quota",
                    o.wanted - o.skipped_for_quota,
                    o.skipped_for_quota
                ),
            ),
            (Some(_), Some(o)) => c(
                "Ready",
                false,
                "DownloadsFailing",
                format!("{} downloads failed", o.failed.len()),
            ),
        };
        let reconciling = if self.reconciling {
            c("Reconciling", true, "Running", "a reconcile round is running".into())
        } else {
            c("Reconciling", false, "Idle", "waiting for a new commit or retry".into())
        };
        let stalled = match (&self.sync_error, round_for_commit.filter(|o| !o.complete())) {
            // Expiry first: it changes what is served, and it explains the sync errors that
            // usually come with it (a head with the same stale snapshot).
            _ if self.expired.is_some() => {
                let e = self.expired.as_ref().map(|e| (e.reason, e.message.clone()));
                let (reason, message) = e.unwrap_or_default();
                c("Stalled", true, reason, message)
            }
            (Some((reason, message)), _) => c("Stalled", true, reason, message.clone()),
            (None, Some(o)) => c(
                "Stalled",
                true,
                "DownloadsFailing",
                o.failed
                    .first()
                    .map(|f| format!("{}: {}", f.artifact, f.message))
                    .unwrap_or_default(),
            ),
            (None, None) => {
                c("Stalled", false, "Progressing", "last sync and reconcile succeeded".into())
            }
        };
        vec![ready, reconciling, stalled]
    }
}

/// RFC 3339 text of a time.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}
