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
    if resp.status().is_success() && req.method == http::Method::GET {
        let m = &node.metrics;
        m.inc(
            "odi_served_total",
            "Artifact responses with bytes, per catalog.",
            &[("catalog", catalog)],
            1.0,
        );
        let len = resp
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        m.inc("odi_served_bytes_total", "Bytes of artifact bodies served.", &[], len);
    }
    Some(resp)
}
