//! Where an import reads an index from: a local folder or an `http(s)://` base URL, addressed
//! by paths relative to it. Remote reads go through the one blocking client of the publishing
//! commands; a missing file is `None` (an importer decides whether that is an error), any other
//! failure is an error naming the place.

use std::io::Read as _;
use std::path::PathBuf;

use sha2::Digest as _;

use super::CmdError;

/// Index files are read whole; one larger than this is refused rather than exhausting memory
/// (Debian's largest Packages file is under 100 MiB uncompressed).
const MAX_INDEX_BYTES: u64 = 512 << 20;

/// Bytes read and the media type the server said they have (`None` for local files).
pub type Typed = (Vec<u8>, Option<String>);

/// A local folder or a remote base URL.
pub struct Source {
    /// Ends with `/`.
    base: String,
    client: Option<reqwest::blocking::Client>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source").field("base", &self.base).finish()
    }
}

/// Whether `from` names a remote index.
pub fn is_remote(from: &str) -> bool {
    from.starts_with("http://") || from.starts_with("https://")
}

impl Source {
    /// `from`: the folder or URL the importer's paths are relative to.
    pub fn new(from: &str) -> Result<Self, CmdError> {
        let client = if is_remote(from) { Some(super::catalog::client()?) } else { None };
        let base = if from.ends_with('/') { from.to_owned() } else { format!("{from}/") };
        Ok(Self { base, client })
    }

    /// Whether reads go over HTTP.
    pub fn remote(&self) -> bool {
        self.client.is_some()
    }

    /// Where `rel` is, for messages.
    pub fn place(&self, rel: &str) -> String {
        format!("{}{rel}", self.base)
    }

    /// The base as a URL (`file://` for a folder), to resolve links in pages against.
    pub fn base_url(&self) -> Result<url::Url, CmdError> {
        if self.remote() {
            return url::Url::parse(&self.base)
                .map_err(|e| CmdError::Usage(format!("{}: {e}", self.base)));
        }
        let abs = std::fs::canonicalize(&self.base).map_err(super::io_err(self.base.as_ref()))?;
        url::Url::from_directory_path(&abs)
            .map_err(|()| CmdError::Usage(format!("{}: not a folder path", abs.display())))
    }

    /// The path of `url` relative to the base, percent-decoded, without query or fragment;
    /// `None` when it lies outside the base (another host, or above the folder).
    pub fn rel_of(&self, base: &url::Url, url: &url::Url) -> Option<String> {
        if url.scheme() != base.scheme()
            || url.host_str() != base.host_str()
            || url.port_or_known_default() != base.port_or_known_default()
        {
            return None;
        }
        let rel = url.path().strip_prefix(base.path())?;
        let rel = percent_encoding::percent_decode_str(rel).decode_utf8().ok()?.into_owned();
        (!rel.is_empty() && !rel.split('/').any(|s| s == ".." || s == ".")).then_some(rel)
    }

    fn local(&self, rel: &str) -> PathBuf {
        PathBuf::from(self.place(rel))
    }

    fn send(
        &self,
        req: reqwest::blocking::RequestBuilder,
        place: &str,
    ) -> Result<Option<reqwest::blocking::Response>, CmdError> {
        let r = req.send().map_err(|e| CmdError::Usage(format!("{place}: {e}")))?;
        if r.status() == reqwest::StatusCode::NOT_FOUND || r.status() == reqwest::StatusCode::GONE {
            return Ok(None);
        }
        r.error_for_status().map(Some).map_err(|e| CmdError::Usage(format!("{place}: {e}")))
    }

    /// The bytes of `rel`, or `None` when it does not exist.
    pub fn get(&self, rel: &str) -> Result<Option<Vec<u8>>, CmdError> {
        Ok(self.get_typed(rel, None)?.map(|(b, _)| b))
    }

    /// The bytes of `rel` asked for with `accept`, and the media type the answer says it has
    /// (`None` for local files).
    pub fn get_typed(&self, rel: &str, accept: Option<&str>) -> Result<Option<Typed>, CmdError> {
        let place = self.place(rel);
        let too_big = || CmdError::Usage(format!("{place}: larger than {MAX_INDEX_BYTES} bytes"));
        match &self.client {
            Some(c) => {
                let mut req = c.get(&place);
                if let Some(a) = accept {
                    req = req.header(reqwest::header::ACCEPT, a);
                }
                let Some(r) = self.send(req, &place)? else { return Ok(None) };
                let kind = r
                    .headers()
                    .get(reqwest::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| v.split(';').next().unwrap_or(v).trim().to_ascii_lowercase());
                let mut out = Vec::new();
                r.take(MAX_INDEX_BYTES + 1)
                    .read_to_end(&mut out)
                    .map_err(|e| CmdError::Usage(format!("{place}: {e}")))?;
                if out.len() as u64 > MAX_INDEX_BYTES {
                    return Err(too_big());
                }
                Ok(Some((out, kind)))
            }
            None => {
                let path = self.local(rel);
                match std::fs::metadata(&path) {
                    Ok(m) if m.is_dir() => return Ok(None),
                    Ok(m) if m.len() > MAX_INDEX_BYTES => return Err(too_big()),
                    _ => {}
                }
                match std::fs::read(&path) {
                    Ok(b) => Ok(Some((b, None))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(CmdError::Io { path, source: e }),
                }
            }
        }
    }

    /// The size of `rel`: the file's length, or a `HEAD` request's `Content-Length`.
    pub fn size(&self, rel: &str) -> Result<u64, CmdError> {
        let place = self.place(rel);
        match &self.client {
            Some(c) => {
                let r = self
                    .send(c.head(&place), &place)?
                    .ok_or_else(|| CmdError::Usage(format!("HEAD {place}: not found")))?;
                r.headers()
                    .get(reqwest::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .ok_or_else(|| CmdError::Usage(format!("HEAD {place}: no Content-Length")))
            }
            None => {
                let path = self.local(rel);
                Ok(std::fs::metadata(&path).map_err(super::io_err(&path))?.len())
            }
        }
    }

    /// Size and SHA-256 of `rel`, streamed (any size, bounded memory).
    pub fn hash(&self, rel: &str) -> Result<(u64, [u8; 32]), CmdError> {
        let place = self.place(rel);
        match &self.client {
            Some(c) => {
                let mut r = self
                    .send(c.get(&place), &place)?
                    .ok_or_else(|| CmdError::Usage(format!("GET {place}: not found")))?;
                let mut h = sha2::Sha256::new();
                let mut buf = vec![0u8; 256 << 10];
                let mut size = 0u64;
                loop {
                    let n = r
                        .read(&mut buf)
                        .map_err(|e| CmdError::Usage(format!("GET {place}: {e}")))?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                    size += n as u64;
                }
                Ok((size, h.finalize().into()))
            }
            None => {
                let path = self.local(rel);
                crate::store::hash_file_counting(&path, |_| {}).map_err(super::io_err(&path))
            }
        }
    }
}

/// The `href` targets of the `<a>` elements of an HTML page, with their other attributes
/// (names lowercase, values with character references decoded), in page order.
///
/// Hand-written rather than a full HTML parser: index pages (PEP 503, directory listings) are
/// flat lists of anchors, and this reads only start tags, so markup it does not understand is
/// skipped rather than misread.
pub fn anchors(html: &str) -> Vec<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        let is_a = rest.len() > 1
            && rest.as_bytes()[0].eq_ignore_ascii_case(&b'a')
            && rest.as_bytes()[1].is_ascii_whitespace();
        if !is_a {
            continue;
        }
        let Some(end) = tag_end(rest) else { break };
        out.push(attributes(&rest[1..end]));
        rest = &rest[end..];
    }
    out
}

/// Where the start tag beginning `s` ends: the first `>` outside a quoted value.
fn tag_end(s: &str) -> Option<usize> {
    let mut quote = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '>') => return Some(i),
            _ => {}
        }
    }
    None
}

fn attributes(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
            i += 1;
        }
        let start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'=' && b[i] != b'/' {
            i += 1;
        }
        if start == i {
            break;
        }
        let name = s[start..i].to_ascii_lowercase();
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < b.len() && b[i] == b'=' {
            i += 1;
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            if i < b.len() && (b[i] == b'"' || b[i] == b'\'') {
                let q = b[i];
                let vs = i + 1;
                i = vs;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
                value = unescape(&s[vs..i.min(b.len())]);
                i += 1;
            } else {
                let vs = i;
                while i < b.len() && !b[i].is_ascii_whitespace() {
                    i += 1;
                }
                value = unescape(&s[vs..i]);
            }
        }
        out.push((name, value));
    }
    out
}

/// Decodes the character references index pages use: the five named ones and numeric ones.
fn unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest.find(';').filter(|&e| e <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let name = &rest[1..end];
        let decoded = match name {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            n if n.starts_with("#x") || n.starts_with("#X") => {
                u32::from_str_radix(&n[2..], 16).ok().and_then(char::from_u32)
            }
            n if n.starts_with('#') => n[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Size and SHA-256 of bytes in memory.
pub fn digest(bytes: &[u8]) -> (u64, [u8; 32]) {
    (bytes.len() as u64, sha2::Sha256::digest(bytes).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_with_quoted_unquoted_and_escaped_attributes() {
        let html = r#"<!DOCTYPE html><html><body>
<A HREF="../../p/x-1.0.tar.gz#sha256=ab&amp;c" data-requires-python="&gt;=3.8">x-1.0</A>
<a href='y.whl' data-core-metadata="sha256=cd">y</a><abbr title="not a link">z</abbr>
<a href=z.whl>z</a><a name="q" href="a>b">t</a><area href="no">
</body></html>"#;
        let a = anchors(html);
        let get = |i: usize, k: &str| {
            a[i].iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default()
        };
        assert_eq!(a.len(), 4, "{a:?}");
        assert_eq!(get(0, "href"), "../../p/x-1.0.tar.gz#sha256=ab&c");
        assert_eq!(get(0, "data-requires-python"), ">=3.8");
        assert_eq!(get(1, "data-core-metadata"), "sha256=cd");
        assert_eq!(get(2, "href"), "z.whl");
        assert_eq!(get(3, "href"), "a>b");
        assert_eq!(unescape("a&#x41;&#66;&bogus;&"), "aAB&bogus;&");
    }
}
