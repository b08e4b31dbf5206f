//! The pages people look at: the page frame, content negotiation (every page is also JSON),
//! the units pages print, and server-rendered SVG charts ([`chart`]).
//!
//! Knows nothing of the modes: a mode builds a page's document (a serializable struct, the
//! JSON twin) and its body with [`maud`], and hands both to [`respond`]. What must stay true:
//! - every string that came from the repository or a request goes through maud's escaping
//!   (never `PreEscaped` with outside text);
//! - pages load nothing from elsewhere: the style sheet is inline, and the only script is the
//!   status page's reload ([`RELOAD`]), allowed by its hash; the Content-Security-Policy
//!   forbids everything else;
//! - a page is readable without CSS (landmarks, headings, tables with headers).

pub mod chart;

use http::header::{HeaderMap, HeaderValue, ACCEPT, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Response, StatusCode};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use time::OffsetDateTime;

use crate::http::response::{self, Body};

/// The one style sheet, inlined into every page.
const STYLE: &str = include_str!("style.css");

/// The one script: reloads a page that asks for it (`data-refresh` seconds on `<body>`) while
/// the box stays ticked and the tab is visible. A `<meta http-equiv=refresh>` would need no
/// script, but a timed reload the reader cannot stop fails WCAG 2.2.1.
const RELOAD: &str = "(function(){var s=+document.body.dataset.refresh,b=document.getElementById('reload');if(!s||!b)return;setInterval(function(){if(b.checked&&!document.hidden)location.reload();},s*1000);})();";

/// Pages load nothing from elsewhere: styles are inline, images inline SVG, and the only
/// script is [`RELOAD`], allowed by its hash.
fn csp() -> HeaderValue {
    static CSP: std::sync::OnceLock<HeaderValue> = std::sync::OnceLock::new();
    CSP.get_or_init(|| {
        use sha2::Digest as _;
        let hash = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            sha2::Sha256::digest(RELOAD.as_bytes()),
        );
        let v = format!(
            "default-src 'none'; script-src 'sha256-{hash}'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        );
        HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"))
    })
    .clone()
}

/// How a page is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A browser (or anything that did not ask for JSON).
    Html,
    /// `Accept: application/json` (preferred over HTML), or the `.json` twin of the page.
    Json,
}

impl Format {
    /// JSON when `Accept` prefers `application/json` to `text/html`: `curl -H 'Accept:
    /// application/json'` and scripts get data, browsers (which send `text/html` first) pages.
    pub fn of(headers: &HeaderMap) -> Self {
        let Some(accept) = headers.get(ACCEPT).and_then(|v| v.to_str().ok()) else {
            return Self::Html;
        };
        let q = |kind: &str| {
            accept
                .split(',')
                .filter_map(|part| {
                    let mut it = part.split(';');
                    let media = it.next()?.trim();
                    (media.eq_ignore_ascii_case(kind)).then(|| {
                        it.find_map(|p| p.trim().strip_prefix("q=")?.parse::<f32>().ok())
                            .unwrap_or(1.0)
                    })
                })
                .fold(None, |best: Option<f32>, q| Some(best.map_or(q, |b| b.max(q))))
        };
        match (q("application/json"), q("text/html")) {
            (Some(j), Some(h)) if j > h => Self::Json,
            (Some(j), None) if j > 0.0 => Self::Json,
            _ => Self::Html,
        }
    }
}

impl Format {
    /// [`Format::of`], or JSON for a page's `.json` twin.
    pub fn of_request(path: &str, headers: &HeaderMap) -> Self {
        if path.ends_with(".json") {
            Self::Json
        } else {
            Self::of(headers)
        }
    }
}

/// A page: its title, the navigation entry it belongs to, and the body.
#[derive(Debug)]
pub struct Page<'a> {
    /// `<title>` and `<h1>`.
    pub title: &'a str,
    /// The name of the network node serving the page (shown in the header).
    pub node: &'a str,
    /// The navigation links (label, href), the current one marked.
    pub nav: &'a [(&'a str, &'a str)],
    /// Which of `nav` this page is.
    pub current: &'a str,
    /// Reload the page every so many seconds (the status page), while the reader lets it.
    pub refresh: Option<u32>,
    /// The main content.
    pub body: Markup,
}

/// The whole HTML document of `page`.
pub fn render(page: &Page<'_>) -> String {
    let doc = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (page.title) " · " (page.node) }
                style { (PreEscaped(STYLE)) }
            }
            body data-refresh=[page.refresh] {
                a class="skip" href="#main" { "Skip to content" }
                header {
                    p class="brand" { "ODI" span { " · " (page.node) } }
                    nav aria-label="Site" {
                        ul {
                            @for (label, href) in page.nav {
                                li {
                                    @if *label == page.current {
                                        a href=(href) aria-current="page" { (label) }
                                    } @else {
                                        a href=(href) { (label) }
                                    }
                                }
                            }
                        }
                    }
                }
                main id="main" {
                    h1 { (page.title) }
                    @if let Some(s) = page.refresh {
                        p class="muted" {
                            label { input type="checkbox" id="reload" checked; " Reload every " (s) " seconds" }
                        }
                    }
                    (page.body)
                }
                @if page.refresh.is_some() { script { (PreEscaped(RELOAD)) } }
                footer {
                    p { "Open Distribution Initiative: every byte is checked against the network's signed catalogs. "
                        "Every page is also JSON (" code { "Accept: application/json" } ")." }
                }
            }
        }
    };
    doc.into_string()
}

/// The answer for a page asked for as `format`: `doc` as JSON, or the rendered page.
/// `page` is only called for HTML (`|| web::render(&Page { .. })`).
pub fn respond(
    format: Format,
    doc: &impl serde::Serialize,
    page: impl FnOnce() -> String,
) -> Response<Body> {
    let mut resp = match format {
        Format::Json => response::json(StatusCode::OK, doc),
        Format::Html => html_response(StatusCode::OK, page()),
    };
    // Pages show live state (health, counts): caches must ask again.
    resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp.headers_mut().insert(http::header::VARY, HeaderValue::from_static("accept"));
    resp
}

/// `status` with an HTML `body`.
pub fn html_response(status: StatusCode, body: String) -> Response<Body> {
    let len = body.len();
    let mut resp = Response::new(response::full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    h.insert("content-security-policy", csp());
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    resp
}

/// Bytes for people: `1.5 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A time for people, to the minute, in UTC: `2026-12-02 07:30 UTC`.
pub fn when(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// The first 12 hex digits of a commit or hash, the whole in a tooltip.
pub fn short(hex: &str) -> Markup {
    let cut = hex.get(..12).unwrap_or(hex);
    html! { code title=(hex) { (cut) } }
}

/// A health badge: text and colour both say it (colour alone is not enough).
pub fn badge(ok: bool, yes: &str, no: &str) -> Markup {
    html! {
        @if ok { span class="badge ok" { "● " (yes) } } @else { span class="badge bad" { "▲ " (no) } }
    }
}

/// A path below `/r/` percent-encoded segment by segment, as a link target.
pub fn href_path(segments: &[&str]) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
    // Everything a path segment must not carry raw (RFC 3986 pchar).
    const SEGMENT: &AsciiSet = &CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'%')
        .add(b'/')
        .add(b'<')
        .add(b'>')
        .add(b'?')
        .add(b'\\')
        .add(b'^')
        .add(b'`')
        .add(b'{')
        .add(b'|')
        .add(b'}');
    segments
        .iter()
        .map(|s| utf8_percent_encode(s, SEGMENT).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_picks_json_only_when_preferred() {
        let cases = [
            (None, Format::Html),
            (Some("application/json"), Format::Json),
            (Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"), Format::Html),
            (Some("application/json, text/html;q=0.5"), Format::Json),
            (Some("text/html, application/json;q=0.9"), Format::Html),
            (Some("application/json;q=0"), Format::Html),
            (Some("*/*"), Format::Html),
        ];
        for (accept, want) in cases {
            let mut h = HeaderMap::new();
            if let Some(a) = accept {
                h.insert(ACCEPT, HeaderValue::from_static(a));
            }
            assert_eq!(Format::of(&h), want, "{accept:?}");
        }
    }

    #[test]
    fn repository_text_is_escaped() {
        let page = Page {
            title: "<script>alert(1)</script>",
            node: "d&1",
            nav: &[("Home", "/")],
            current: "Home",
            refresh: None,
            body: html! { p { ("<script>alert(2)</script>") } },
        };
        let out = render(&page);
        assert!(!out.contains("<script>"), "{out}");
        assert!(out.contains("&lt;script&gt;alert(2)&lt;/script&gt;"));
        assert!(out.contains("d&amp;1"));
    }

    #[test]
    fn units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
        assert_eq!(href_path(&["a b", "c#d", "ü"]), "a%20b/c%23d/%C3%BC");
    }
}
