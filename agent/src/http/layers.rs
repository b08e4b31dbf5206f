//! The tower layers every router of the server wears, outermost first: a panic in a handler
//! becomes a 500 (the connection and the server live on); every request gets a tracing span;
//! a handler that takes longer than its budget to produce a response head gets a 503 (a
//! response body, such as a long download, is not bounded by this); and an HTTP/1.1 request
//! without exactly one `Host` gets a 400 (RFC 9112 section 3.2) before any handler runs.
//!
//! Layers see requests after the plain path declined them (see [`super::plain`]), which applies
//! the same `Host` rule before answering anything itself.

use std::any::Any;
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use axum::Router;
use http::{header, StatusCode, Version};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use super::response;

/// Wraps `router` in the standard layers; `handler_budget` bounds the time to a response head.
pub fn standard(router: Router, handler_budget: Duration) -> Router {
    router
        .layer(axum::middleware::from_fn(require_host))
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, handler_budget))
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(panicked))
}

/// 400 for an HTTP/1.1 request with no `Host` or with several.
pub async fn require_host(req: Request, next: Next) -> Response {
    if req.version() == Version::HTTP_11 {
        let hosts = req.headers().get_all(header::HOST).iter().count();
        if hosts != 1 {
            let why = if hosts == 0 { "no Host header" } else { "more than one Host header" };
            let msg = format!("HTTP/1.1 request with {why} (RFC 9112 section 3.2)");
            return response::text(StatusCode::BAD_REQUEST, msg).into_response();
        }
    }
    next.run(req).await
}

fn panicked(_: Box<dyn Any + Send + 'static>) -> Response {
    tracing::error!("request handler panicked");
    response::text(StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt as _;

    use super::*;

    fn app() -> Router {
        let r = Router::new()
            .route("/ok", get(|| async { "ok" }))
            .route(
                "/panic",
                get(|| async {
                    panic!("expected in test");
                    #[allow(unreachable_code)]
                    ""
                }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            );
        standard(r, Duration::from_millis(100))
    }

    fn req(path: &str, version: Version, hosts: &[&str]) -> Request {
        let mut b = http::Request::builder().uri(path).version(version);
        for h in hosts {
            b = b.header(header::HOST, *h);
        }
        b.body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn host_rule_by_version() {
        let cases: &[(Version, &[&str], u16)] = &[
            (Version::HTTP_11, &["a"], 200),
            (Version::HTTP_11, &[], 400),
            (Version::HTTP_11, &["a", "b"], 400),
            // HTTP/1.0 predates Host; HTTP/2 carries :authority instead.
            (Version::HTTP_10, &[], 200),
            (Version::HTTP_2, &[], 200),
        ];
        for (version, hosts, want) in cases {
            let r = app().oneshot(req("/ok", *version, hosts)).await.unwrap();
            assert_eq!(r.status().as_u16(), *want, "{version:?} with {hosts:?}");
        }
    }

    #[tokio::test]
    async fn panic_is_a_500_and_slow_handler_a_503() {
        let r = app().oneshot(req("/panic", Version::HTTP_11, &["a"])).await.unwrap();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let r = app().oneshot(req("/slow", Version::HTTP_11, &["a"])).await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
