//! The one list of the HTTP surface: every route of both modes, the handlers of the endpoints
//! every agent has, and the standard layers (see [`crate::http::layers`]). The plain path
//! answers some directory redirects before this router sees them (see [`crate::http::plain`]),
//! with the same answers the routes below give. `docs/protocol.adoc` documents this list.
//!
//! | route | modes | what |
//! |---|---|---|
//! | `GET /healthz` | both | liveness |
//! | `GET /metrics` | both | Prometheus text |
//! | `GET /.odi/v1/status` | both | the status document |
//! | `GET /.odi/v1/inventory` | both | live artifacts held |
//! | `POST /.odi/v1/sync` | both | pull now (bearer token) |
//! | `GET /.odi/v1/blob/{sha256}` | both | object bytes for peers |
//! | `GET /.odi/v1/hot` | directory | the hot list |
//! | `GET /.odi/v1/stats` | directory | download statistics |
//! | `GET /r/{catalog}/{path}` | both | bytes (relay), a redirect (directory), `.meta4` |
//! | `GET /r/{catalog}/{folder}/` | directory | a folder listing (unless it lists an `index.html`) |
//! | `GET /r/{catalog}/{path}?mirrorlist` | directory | the artifact's mirror list |
//! | `GET /`, `/index.json` | both | the landing page (a relay: its own page) |
//! | `GET /status`, `/status.json` | directory | the network status page |
//! | `GET /stats`, `/stats.json` | directory | the download statistics page |
//!
//! Pages answer JSON for `Accept: application/json` and at their `.json` twins.
//!
//! `GET` routes answer `HEAD` too; another method gets `405` with `Allow`, an unknown path
//! `404`, in both modes alike.

use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::middleware::Next;
use axum::routing::{get, post};
use axum::Router;
use http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use http::request::Parts;
use http::{Response, StatusCode};

use super::Role;
use crate::directory::pages;
use crate::directory::serve as directory;
use crate::http::file::{self, ArtifactMeta};
use crate::http::layers;
use crate::http::response::{self, Body};
use crate::node::off_thread;
use crate::relay;

/// Time a handler has to produce a response head (a body, such as a download, may take
/// longer).
const HANDLER_BUDGET: Duration = Duration::from_secs(30);

/// The agent's router for `role`.
pub fn router(role: &Role) -> Router {
    // The agent API, the same in both modes; a directory adds its own below.
    let v1 = Router::new()
        .route("/status", get(status))
        .route("/inventory", get(inventory))
        .route("/sync", post(sync_now));
    let common = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .nest("/.odi/v1", v1)
        .with_state(role.clone());
    let blob = Router::new().route("/.odi/v1/blob/{sha256}", get(blob)).with_state(role.clone());
    let (artifacts, own) = match role {
        Role::Relay(r) => {
            let a = Router::new()
                .route("/r/", get(relay::serve))
                .route("/r/{*path}", get(relay::serve))
                .with_state(r.clone());
            let pages = Router::new()
                .route("/", get(relay::page))
                .route("/index.json", get(relay::page))
                .with_state(r.clone());
            (a, pages)
        }
        Role::Directory(d) => {
            let a = Router::new()
                .route("/r/", get(directory::serve))
                .route("/r/{*path}", get(directory::serve))
                .with_state(d.clone());
            let v1 = Router::new()
                .route("/hot", get(directory::hot))
                .route("/stats", get(directory::stats));
            let pages = Router::new()
                .route("/", get(pages::landing))
                .route("/index.json", get(pages::landing))
                .route("/status", get(pages::network))
                .route("/status.json", get(pages::network))
                .route("/stats", get(pages::statistics))
                .route("/stats.json", get(pages::statistics));
            (a, pages.nest("/.odi/v1", v1).with_state(d.clone()))
        }
    };
    // Every route that hands out artifact bytes, and only those, stops while the trust of the
    // applied commit has expired and the policy says refuse.
    let guard = axum::middleware::from_fn_with_state(role.node().clone(), refuse_when_expired);
    let bytes = artifacts.merge(blob).route_layer(guard);
    layers::standard(common.merge(own).merge(bytes).fallback(not_found), HANDLER_BUDGET)
}

/// `on_expiry = "refuse"`: 503 instead of bytes (see [`crate::artifact::refusal`]).
async fn refuse_when_expired(
    State(node): State<std::sync::Arc<crate::node::Node>>,
    req: Request,
    next: Next,
) -> axum::response::Response {
    match crate::artifact::refusal(&node) {
        Some(r) => axum::response::IntoResponse::into_response(r),
        None => next.run(req).await,
    }
}

async fn not_found() -> Response<Body> {
    response::cache(response::text(StatusCode::NOT_FOUND, "not found"), response::CACHE_MISSING)
}

async fn healthz() -> Response<Body> {
    response::text(StatusCode::OK, "ok")
}

async fn metrics(State(role): State<Role>) -> Response<Body> {
    off_thread(move || {
        role.update_gauges();
        let mut r = response::text(StatusCode::OK, role.node().metrics.render());
        let ct = HeaderValue::from_static("text/plain; version=0.0.4");
        r.headers_mut().insert(CONTENT_TYPE, ct);
        r
    })
    .await
}

async fn status(State(role): State<Role>) -> Response<Body> {
    off_thread(move || response::json(StatusCode::OK, &role.status())).await
}

/// The inventory, or `304 Not Modified` when `If-None-Match` names it: a directory probing a
/// relay whose holdings did not change gets a few hundred bytes instead of the whole list, and
/// the relay answers from the tag alone, without listing anything.
async fn inventory(State(role): State<Role>, req: Parts) -> Response<Body> {
    off_thread(move || {
        let node = role.node();
        let asked = req.headers.get(IF_NONE_MATCH).map(HeaderValue::as_bytes);
        let matches = |tag: &str| asked.is_some_and(|v| file::etag_list_matches(v, tag, true));
        if let Some(tag) = node.inventory_tag().filter(|t| matches(t)) {
            return response::not_modified(&tag);
        }
        let (inv, tag) = node.inventory();
        if matches(&tag) {
            return response::not_modified(&tag);
        }
        let mut r = response::json(StatusCode::OK, &inv);
        if let Ok(v) = HeaderValue::from_str(&tag) {
            r.headers_mut().insert(ETAG, v);
        }
        r
    })
    .await
}

/// `POST /.odi/v1/sync` with `Authorization: Bearer <token>`: pull now.
async fn sync_now(State(role): State<Role>, req: Parts) -> Response<Body> {
    let node = role.node();
    let Some(token) = &node.config.trigger_token else {
        return response::text(StatusCode::NOT_FOUND, "no sync trigger configured");
    };
    let given = req
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Constant-time comparison: the token is a secret and this endpoint is public.
    let ok = given.is_some_and(|g| {
        g.len() == token.len()
            && g.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    });
    if !ok {
        return response::text(StatusCode::UNAUTHORIZED, "bad or missing bearer token");
    }
    node.sync_now.notify_one();
    response::text(StatusCode::ACCEPTED, "sync scheduled")
}

/// `GET /.odi/v1/blob/<sha256>`: object bytes for peers (relays fetching from directories,
/// linked directories from each other).
async fn blob(State(role): State<Role>, Path(hex): Path<String>, req: Parts) -> Response<Body> {
    let node = role.node();
    let mut sha = [0u8; 32];
    if hex.len() != 64 || hex::decode_to_slice(&hex, &mut sha).is_err() {
        return response::text(StatusCode::BAD_REQUEST, "expected /.odi/v1/blob/<64 hex digits>");
    }
    let missing = || {
        response::cache(
            response::text(StatusCode::NOT_FOUND, "object not held here"),
            response::CACHE_MISSING,
        )
    };
    let Some(info) = node.store.info(&sha) else { return missing() };
    let Some(stored) = node.store.open_object(&sha).await else { return missing() };
    file::serve(&req, stored, &ArtifactMeta { size: info.size, sha256: sha, last_modified: None })
        .await
}

#[cfg(test)]
mod tests;
