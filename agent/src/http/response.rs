//! Small builders for the non-file responses the server sends: plain text, JSON, redirects and
//! empty bodies, all as one boxed [`Body`] type, plus the `Cache-Control` policies they carry.

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};

/// Every response body the server's handlers build: boxed, so that files, documents and empty
/// answers share one type.
pub type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// `Cache-Control` of an answer that says something does not exist (404) or no longer does
/// (410): short, so that a shared cache neither hammers the origin nor keeps an answer for long
/// after it changed (an artifact published a minute later, an expunge that must reach clients).
pub const CACHE_MISSING: HeaderValue = HeaderValue::from_static("public, max-age=60");

/// `Cache-Control` of a stored file's bytes: a cache may keep them but must revalidate with
/// the strong ETag before reuse. The bytes under a path never change, but the path can be
/// expunged; heuristic freshness would let a shared cache serve an expunged artifact for weeks.
pub const CACHE_REVALIDATE: HeaderValue = HeaderValue::from_static("public, no-cache");

/// Sets `Cache-Control` to `value`.
pub fn cache(mut resp: Response<Body>, value: HeaderValue) -> Response<Body> {
    resp.headers_mut().insert(CACHE_CONTROL, value);
    resp
}

/// A body holding `bytes` in memory; for small generated responses only.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

/// A body with no bytes.
pub fn empty_body() -> Body {
    Empty::<Bytes>::new().map_err(|never| match never {}).boxed()
}

/// `status` with a `text/plain` body. A trailing newline is added so the
/// message reads well in `curl`.
pub fn text(status: StatusCode, msg: impl std::fmt::Display) -> Response<Body> {
    let body = format!("{msg}\n");
    let len = body.len();
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

/// `status` with `value` serialized as JSON. Serialization failure (a bug in
/// our own types, not client input) becomes a 500 rather than a panic.
pub fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(mut body) => {
            body.push(b'\n');
            let len = body.len();
            let mut resp = Response::new(full(body));
            *resp.status_mut() = status;
            let h = resp.headers_mut();
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            h.insert(CONTENT_LENGTH, HeaderValue::from(len));
            resp
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot serialize JSON response");
            text(StatusCode::INTERNAL_SERVER_ERROR, "internal error: cannot serialize response")
        }
    }
}

/// A redirect to `location`. `private, no-cache` because the target relay is
/// chosen per client (region, health), so shared caches must not reuse it.
/// A `location` that is not a valid header value yields a 500: it comes from
/// our own configuration, so that is our bug, not the client's.
pub fn redirect(status: StatusCode, location: &str) -> Response<Body> {
    let Ok(loc) = HeaderValue::from_str(location) else {
        tracing::error!(location, "redirect target is not a valid header value");
        return text(StatusCode::INTERNAL_SERVER_ERROR, "internal error: bad redirect target");
    };
    let mut resp = empty(status);
    let h = resp.headers_mut();
    h.insert(LOCATION, loc);
    h.insert(CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    resp
}

/// `304 Not Modified` for a representation whose ETag is `etag` (a quoted tag).
pub fn not_modified(etag: &str) -> Response<Body> {
    let mut resp = empty(StatusCode::NOT_MODIFIED);
    if let Ok(v) = HeaderValue::from_str(etag) {
        resp.headers_mut().insert(http::header::ETAG, v);
    }
    resp
}

/// `status` with no body. `Content-Length: 0` is omitted where RFC 9110
/// forbids it (1xx, 204) or where it would misstate the representation (304).
pub fn empty(status: StatusCode) -> Response<Body> {
    let mut resp = Response::new(empty_body());
    *resp.status_mut() = status;
    if !(status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED)
    {
        resp.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from(0u64));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_bytes(resp: Response<Body>) -> Bytes {
        resp.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn text_sets_type_and_length() {
        let r = text(StatusCode::NOT_FOUND, "no such artifact");
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()[CONTENT_TYPE], "text/plain; charset=utf-8");
        assert_eq!(r.headers()[CONTENT_LENGTH], "17");
        assert_eq!(&body_bytes(r).await[..], b"no such artifact\n");
    }

    #[tokio::test]
    async fn json_serializes() {
        let r = json(StatusCode::OK, &serde_json::json!({"mode": "relay"}));
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(&body_bytes(r).await[..], b"{\"mode\":\"relay\"}\n");
    }

    #[test]
    fn redirect_is_private() {
        let r = redirect(StatusCode::FOUND, "https://relay.example/r/c/a.whl");
        assert_eq!(r.status(), 302);
        assert_eq!(r.headers()[LOCATION], "https://relay.example/r/c/a.whl");
        assert_eq!(r.headers()[CACHE_CONTROL], "private, no-cache");
        let bad = redirect(StatusCode::FOUND, "https://x/\n");
        assert_eq!(bad.status(), 500);
    }

    #[test]
    fn empty_has_zero_length() {
        let r = empty(StatusCode::GONE);
        assert_eq!(r.status(), 410);
        assert_eq!(r.headers()[CONTENT_LENGTH], "0");
        assert!(empty(StatusCode::NO_CONTENT).headers().get(CONTENT_LENGTH).is_none());
    }
}
