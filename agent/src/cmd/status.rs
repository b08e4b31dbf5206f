//! `odi status URL`: an agent's status document, rendered for a person.

use std::fmt::Write as _;

use odi_network::units::ByteSize;

use super::CmdError;
use crate::status::StatusDoc;

/// Fetches `<url>/.odi/v1/status` and renders it (or returns the JSON as is).
pub async fn fetch_and_render(url: &str, json: bool) -> Result<String, CmdError> {
    let endpoint = format!("{}/.odi/v1/status", url.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
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
        s.push_str(&crate::directory::render_status(d));
    }
    s
}
