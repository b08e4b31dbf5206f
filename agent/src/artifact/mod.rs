//! Artifacts as both modes serve them: the `/r/<catalog>/<path>` request path ([`path`]),
//! looking it up in the applied commit (with the 400/404/410/503 answers for what is not
//! servable), and serving stored bytes with the catalog's validators and digests.

pub mod path;

use http::request::Parts;
use http::{Response, StatusCode};
use odi_network::model::Artifact;

use crate::http::file::{self, ArtifactMeta};
use crate::http::response::{self, Body};
use crate::node::{Node, View};

pub use path::{parse_artifact_path, ArtifactPath, PathError};

/// Why `/r/<catalog>/<path>` names nothing servable.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// A hostile or malformed path.
    #[error(transparent)]
    BadPath(#[from] PathError),
    /// Nothing verified yet.
    #[error("no verified commit applied yet")]
    NoCommit,
    /// Not in the applied commit.
    #[error("no artifact {0}")]
    Unknown(String),
    /// Withdrawn, with the catalog's reason.
    #[error("{0} was expunged: {1}")]
    Expunged(String, String),
}

impl LookupError {
    /// 400, 503, 404 or 410 with the message as body; 404 and 410 carry a short
    /// `Cache-Control` (see [`response::CACHE_MISSING`]).
    pub fn response(&self) -> Response<Body> {
        let status = match self {
            LookupError::BadPath(e) => e.status(),
            LookupError::NoCommit => StatusCode::SERVICE_UNAVAILABLE,
            LookupError::Unknown(_) => StatusCode::NOT_FOUND,
            LookupError::Expunged(..) => StatusCode::GONE,
        };
        let r = response::text(status, self);
        if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
            return response::cache(r, response::CACHE_MISSING);
        }
        r
    }
}

/// `503` while the node refuses artifact requests because its trust expired
/// (`on_expiry = "refuse"`); `None` when it serves. The router applies it to every route
/// that hands out bytes; the plain path declines while it holds.
pub fn refusal(node: &Node) -> Option<Response<Body>> {
    if !node.refusing.load(std::sync::atomic::Ordering::Relaxed) {
        return None;
    }
    let why = node.health().expired.as_ref().map(|e| e.message.clone()).unwrap_or_default();
    let mut r = response::text(StatusCode::SERVICE_UNAVAILABLE, why);
    r.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("300"));
    Some(r)
}

/// Looks up `/r/<catalog>/<path>` in the applied commit.
pub fn lookup<'v>(
    view: Option<&'v View>,
    raw_path: &str,
) -> Result<(&'v Artifact, ArtifactPath), LookupError> {
    let parsed = parse_artifact_path(raw_path)?;
    let view = view.ok_or(LookupError::NoCommit)?;
    let name = || format!("{}/{}", parsed.catalog, parsed.path);
    let artifact = view
        .network
        .artifact(&parsed.catalog, &parsed.path)
        .ok_or_else(|| LookupError::Unknown(name()))?;
    if let Some(reason) = &artifact.expunged {
        return Err(LookupError::Expunged(name(), reason.clone()));
    }
    Ok((artifact, parsed))
}

/// Serves an artifact's bytes from the store, or `None` when they are not stored.
pub async fn serve_stored(
    node: &Node,
    req: &Parts,
    catalog: &str,
    artifact: &Artifact,
) -> Option<Response<Body>> {
    let stored = node.store.open_object(&artifact.sha256.0).await?;
    let meta = ArtifactMeta {
        size: artifact.size,
        sha256: artifact.sha256.0,
        last_modified: artifact.published.map(Into::into),
    };
    let resp = file::serve(req, stored, &meta).await;
    count_served(node, catalog, &req.method, resp.status(), resp.headers());
    Some(resp)
}

/// Counts an answer about stored bytes in the metrics (both paths call it).
pub fn count_served(
    node: &Node,
    catalog: &str,
    method: &http::Method,
    status: http::StatusCode,
    headers: &http::HeaderMap,
) {
    if !status.is_success() || method != http::Method::GET {
        return;
    }
    let m = &node.metrics;
    m.inc(
        "odi_served_total",
        "Artifact responses with bytes, per catalog.",
        &[("catalog", catalog)],
        1.0,
    );
    let len = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    m.inc("odi_served_bytes_total", "Bytes of artifact bodies served.", &[], len);
}

/// The plain path's answer for stored bytes (a relay's): the head into `out` and the file
/// region to send, decided by the same [`file::plan`] as the router's answer. `None` (the
/// router answers) unless the bytes are stored and verified and every header is usable.
pub fn plain_stored(
    node: &Node,
    req: &crate::http::PlainRequest<'_>,
    catalog: &str,
    artifact: &Artifact,
    out: &mut Vec<u8>,
) -> Option<crate::http::plain::Answer> {
    use http::header;
    let file = node.store.open_verified_now(&artifact.sha256.0)?;
    let mut headers = http::HeaderMap::new();
    for name in [
        header::RANGE,
        header::IF_RANGE,
        header::IF_MATCH,
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_UNMODIFIED_SINCE,
    ] {
        for v in req.header_values(name.as_str()) {
            headers.append(name.clone(), http::HeaderValue::from_bytes(v).ok()?);
        }
    }
    let uri: http::Uri = req.path.parse().ok()?;
    let method = if req.head { http::Method::HEAD } else { http::Method::GET };
    let meta = ArtifactMeta {
        size: artifact.size,
        sha256: artifact.sha256.0,
        last_modified: artifact.published.map(Into::into),
    };
    let plan = file::plan(file::Head { method: &method, uri: &uri, headers: &headers }, &meta);
    count_served(node, catalog, &method, plan.status, &plan.headers);
    let mut head = crate::http::PlainResponse::new(out, plan.status);
    for (name, value) in &plan.headers {
        head.header(name, value);
    }
    head.finish_head();
    Some(match plan.body {
        Some((start, len)) => {
            node.metrics.inc(
                "odi_served_plain_total",
                "Artifact bodies sent by the plain path (sendfile on plain HTTP), not by hyper.",
                &[],
                1.0,
            );
            crate::http::plain::Answer::File(crate::http::plain::FileRegion { file, start, len })
        }
        None => crate::http::plain::Answer::Done,
    })
}
