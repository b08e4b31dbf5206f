//! `odi status URL`: an agent's status document, rendered for a person.

use std::fmt::Write as _;

use odi_network::units::ByteSize;

use super::CmdError;
use crate::status::{DirectoryStatus, StatusDoc};

/// Fetches `<url>/.odi/v1/status` and renders it (or returns the JSON as is).
pub async fn fetch_and_render(url: &str, json: bool) -> Result<String, CmdError> {
    let endpoint = format!("{}/.odi/v1/status", url.trim_end_matches('/'));
    let ten = std::time::Duration::from_secs(10);
    let client = crate::fetch::http_client(crate::fetch::ClientRole::Probe, ten, Some(ten), &[])
        .map_err(|e| CmdError::Usage(e.to_string()))?;
    let resp = client
        .get(&endpoint)
        .send()
        .await
        .map_err(|e| CmdError::Usage(format!("{endpoint}: {e}")))?;
    if !resp.status().is_success() {
        return Err(CmdError::Usage(format!("{endpoint}: HTTP {}", resp.status())));
    }
    let text = resp.text().await.map_err(|e| CmdError::Usage(format!("{endpoint}: {e}")))?;
    if json {
        return Ok(text + "\n");
    }
    let doc: StatusDoc = serde_json::from_str(&text)
        .map_err(|e| CmdError::Usage(format!("{endpoint}: not an ODI status document: {e}")))?;
    Ok(render(&doc))
}

/// The human rendering.
pub fn render(doc: &StatusDoc) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{} `{}` (odi {})", doc.mode, doc.name, doc.version);
    let _ = writeln!(s, "commit:   {}", doc.commit.as_deref().unwrap_or("none applied"));
    for c in &doc.conditions {
        let _ = writeln!(s, "{:<12} {:<5} {} - {}", c.kind, c.status, c.reason, c.message);
    }
    let quota = doc.store.quota.map(|q| format!(" of {}", ByteSize(q))).unwrap_or_default();
    let _ = writeln!(
        s,
        "store:    {} objects, {}{quota}",
        doc.store.objects,
        ByteSize(doc.store.bytes)
    );
    let _ = writeln!(
        s,
        "share:    {} artifacts ({}), {} missing",
        doc.share.artifacts,
        ByteSize(doc.share.bytes),
        doc.share.missing
    );
    for f in &doc.failures {
        let _ = writeln!(s, "failed:   {}: {}", f.artifact, f.message);
    }
    if let Some(e) = &doc.last_error {
        let _ = writeln!(s, "last error: {e}");
    }
    if let Some(d) = &doc.directory {
        render_directory(&mut s, d);
    }
    s
}

/// The directory section.
fn render_directory(out: &mut String, d: &DirectoryStatus) {
    let list = |v: &[String]| if v.is_empty() { "-".to_owned() } else { v.join(", ") };
    let short = |c: &Option<String>| {
        c.as_deref().map(|c| c.chars().take(12).collect::<String>()).unwrap_or_else(|| "-".into())
    };
    let _ = writeln!(
        out,
        "directory: region {}; catalogs {}; links {}; references {}",
        d.region.as_deref().unwrap_or("-"),
        list(&d.catalogs),
        list(&d.links),
        list(&d.references)
    );
    let r = &d.routing;
    let _ = writeln!(
        out,
        "routing:  {} of {} artifacts have a healthy relay (table for commit {}{})",
        r.routable,
        r.artifacts,
        short(&r.commit),
        if r.current { "" } else { ", rebuilding" }
    );
    let _ = writeln!(out, "downloads: {} total; {} hot artifacts", d.downloads, d.hot);
    for (name, p) in &d.peers {
        let live = if p.live { "live" } else { "DOWN" };
        let _ = writeln!(
            out,
            "peer directory {name}: {live} ({}), commit {}",
            p.reason,
            short(&p.commit)
        );
    }
    for relay in &d.relays {
        let state = if relay.healthy { "healthy" } else { "UNHEALTHY" };
        let lag = if relay.lagging { " (lagging)" } else { "" };
        let _ = writeln!(
            out,
            "  {:<16} {:<6} {:<9} commit {}{lag}, holds {} of {} listed, {} content checks, probed {}",
            relay.name,
            relay.region,
            state,
            short(&relay.commit),
            relay.artifacts_held,
            relay.artifacts_listed,
            relay.content_checks,
            relay.last_probe.as_deref().unwrap_or("-"),
        );
        if let Some(reason) = &relay.reason {
            let _ = writeln!(out, "  {:<16} why: {reason}", "");
        }
    }
}
