//! The directory section of the status document ([`DirectoryStatus`]): the relays it probes
//! and what it found, its federation peers, and the routing table's state.

use std::sync::Arc;

use odi_network::raw::DirectoryKind;

use super::DirectoryMode;
use crate::node::View;
use crate::status::{rfc3339, DirectoryStatus, RelayEntry, RoutingStatus};

impl DirectoryMode {
    /// The directory section for `view` (the applied one, or none yet).
    pub fn status_section(&self, view: Option<&View>) -> DirectoryStatus {
        let me_name = &self.node.config.name;
        let health = self.relay_health();
        let me = view.and_then(|v| v.network.directories.get(me_name));
        let relays = view
            .map(|v| {
                let mine = v.network.relays.values().filter(|r| r.directories.contains(me_name));
                mine.map(|r| {
                    let h = health.get(&r.name).cloned().unwrap_or_default();
                    let lagging = h.commit.as_ref().is_some_and(|c| *c != v.commit);
                    let not_probed = h.last_probe.is_none().then(|| "not probed yet".to_owned());
                    RelayEntry {
                        name: r.name.clone(),
                        url: r.url.to_string(),
                        region: r.region.clone(),
                        healthy: h.healthy,
                        reason: h.reason.clone().or(not_probed),
                        last_probe: h.last_probe.map(rfc3339),
                        last_healthy: h.last_healthy.map(rfc3339),
                        commit: h.commit.clone(),
                        lagging,
                        artifacts_listed: h.listed,
                        artifacts_held: h.held.len(),
                        content_checks: h.checks,
                        stored_bytes: h.store.0,
                        quota: h.store.1,
                        ipv4: h.families.v4.text(),
                        ipv6: h.families.v6.text(),
                        probe_bytes: h.received,
                    }
                })
                .collect()
            })
            .unwrap_or_default();
        let table = self.table();
        let current =
            matches!((&table.view, view), (Some(t), Some(v)) if std::ptr::eq(Arc::as_ptr(t), v));
        let kind = me.map(|d| match d.kind {
            DirectoryKind::Meta => "meta".to_owned(),
            _ => "directory".to_owned(),
        });
        DirectoryStatus {
            region: me.map(|d| d.region.clone()),
            catalogs: me.map(|d| d.catalogs.clone()).unwrap_or_default(),
            links: me.map(|d| d.links.clone()).unwrap_or_default(),
            references: me.map(|d| d.references.clone()).unwrap_or_default(),
            kind,
            peers: (*self.federation.health()).clone(),
            relays,
            routing: RoutingStatus {
                commit: table.view.as_ref().map(|v| v.commit.clone()),
                current,
                artifacts: table.entries().len(),
                routable: table.entries().iter().filter(|e| !e.candidates.is_empty()).count(),
            },
            hot: self.hot_list().artifacts.len(),
            downloads: self.stats.downloads(),
        }
    }
}
