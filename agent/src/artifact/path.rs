//! Parsing of `/r/<catalog>/<path>` request paths. The raw URI path is
//! percent-decoded exactly once and then checked segment by segment, so that
//! nothing a client sends can name a file outside the catalog's store
//! (`..`, absolute paths, backslashes, NUL, double encoding, overlong UTF-8).

use http::StatusCode;

/// The prefix every artifact request starts with.
pub const ARTIFACT_PREFIX: &str = "/r/";

/// The suffix under which a directory serves an artifact's Metalink.
pub const META4_SUFFIX: &str = ".meta4";

/// The file a request for a folder (a path ending in `/`) is answered with.
pub const INDEX_FILE: &str = "index.html";

/// Raw paths longer than this are refused before any work is done on them.
pub const MAX_PATH_LEN: usize = 4096;

/// A parsed, safe artifact request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactPath {
    /// The catalog name (first segment after `/r/`).
    pub catalog: String,
    /// The artifact path inside the catalog, `/`-separated, never empty,
    /// never with `.`/`..`/empty segments, with the `.meta4` suffix removed.
    pub path: String,
    /// The request asked for the Metalink (`.meta4` suffix) of `path`.
    pub meta4: bool,
}

/// Why a request path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("not an artifact path (expected /r/<catalog>/<path>)")]
    NotArtifactPath,
    #[error("request path is longer than {MAX_PATH_LEN} bytes")]
    TooLong,
    #[error("malformed percent-encoding in request path")]
    BadPercentEncoding,
    #[error("request path is not valid UTF-8 after decoding")]
    NotUtf8,
    #[error("request path still contains '%' after decoding (double encoding)")]
    DoubleEncoded,
    #[error("request path contains a control character or NUL")]
    ControlChar,
    #[error("request path contains a backslash")]
    Backslash,
    #[error("request path has an empty segment (leading, trailing or doubled '/')")]
    EmptySegment,
    #[error("request path has a '.' or '..' segment")]
    DotSegment,
    #[error("catalog name is empty or has characters outside [A-Za-z0-9._-]")]
    BadCatalog,
    #[error("request path names a catalog but no artifact")]
    MissingArtifact,
}

impl PathError {
    /// The status to answer with: a path outside `/r/` is simply not found;
    /// everything else is a malformed request.
    pub fn status(&self) -> StatusCode {
        match self {
            PathError::NotArtifactPath => StatusCode::NOT_FOUND,
            PathError::TooLong => StatusCode::URI_TOO_LONG,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// Parses a raw (still percent-encoded) URI path such as `/r/pypi/a/b.whl`.
pub fn parse_artifact_path(raw: &str) -> Result<ArtifactPath, PathError> {
    if raw.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    let rest = raw.strip_prefix(ARTIFACT_PREFIX).ok_or(PathError::NotArtifactPath)?;
    let decoded = percent_decode_once(rest)?;
    // Decoding happens once; a '%' left over means the client encoded twice
    // and some other layer might decode again, so refuse it outright.
    if decoded.contains('%') {
        return Err(PathError::DoubleEncoded);
    }
    if decoded.chars().any(char::is_control) {
        return Err(PathError::ControlChar);
    }
    if decoded.contains('\\') {
        return Err(PathError::Backslash);
    }
    let (catalog, path) = match decoded.split_once('/') {
        Some((c, p)) => (c, p),
        None if decoded.is_empty() => return Err(PathError::EmptySegment),
        None => return Err(PathError::MissingArtifact),
    };
    if catalog.is_empty() {
        return Err(PathError::EmptySegment);
    }
    if !valid_catalog(catalog) {
        return Err(if catalog == "." || catalog == ".." {
            PathError::DotSegment
        } else {
            PathError::BadCatalog
        });
    }
    if path.is_empty() {
        return Err(PathError::MissingArtifact);
    }
    // A folder URL means its `index.html`, as static web servers answer it: pip asks for
    // `<index>/<project>/` in a PEP 503 simple index.
    let with_index;
    let path = if path.ends_with('/') {
        with_index = format!("{path}{INDEX_FILE}");
        with_index.as_str()
    } else {
        path
    };
    let (path, meta4) = match path.strip_suffix(META4_SUFFIX) {
        Some(p) => (p, true),
        None => (path, false),
    };
    for seg in path.split('/') {
        match seg {
            "" => return Err(PathError::EmptySegment),
            "." | ".." => return Err(PathError::DotSegment),
            _ => {}
        }
    }
    Ok(ArtifactPath { catalog: catalog.to_owned(), path: path.to_owned(), meta4 })
}

fn valid_catalog(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Decodes `%XX` escapes once. A lone `%` or a non-hex escape is an error
/// rather than passed through, so no two spellings mean the same path.
/// Invalid UTF-8 (including overlong forms such as `%c0%ae`) is refused.
fn percent_decode_once(s: &str) -> Result<String, PathError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = bytes.get(i + 1).and_then(|b| hex_val(*b));
            let lo = bytes.get(i + 2).and_then(|b| hex_val(*b));
            match (hi, lo) {
                (Some(h), Some(l)) => out.push(h << 4 | l),
                _ => return Err(PathError::BadPercentEncoding),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| PathError::NotUtf8)
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(catalog: &str, path: &str, meta4: bool) -> Result<ArtifactPath, PathError> {
        Ok(ArtifactPath { catalog: catalog.into(), path: path.into(), meta4 })
    }

    #[test]
    fn accepts_plain_paths() {
        let cases = [
            ("/r/pypi/a.whl", ok("pypi", "a.whl", false)),
            ("/r/pypi/p/pkg/pkg-1.0.tar.gz", ok("pypi", "p/pkg/pkg-1.0.tar.gz", false)),
            (
                "/r/maven-central/org/x/1.0/x-1.0.jar.meta4",
                ok("maven-central", "org/x/1.0/x-1.0.jar", true),
            ),
            ("/r/c/a%20b.txt", ok("c", "a b.txt", false)),
            ("/r/c/%E2%9C%93.txt", ok("c", "\u{2713}.txt", false)),
            ("/r/c/...", ok("c", "...", false)),
            ("/r/c/.hidden", ok("c", ".hidden", false)),
            ("/r/c/a..b", ok("c", "a..b", false)),
            ("/r/c.d_e/x", ok("c.d_e", "x", false)),
            // '%2f' decodes to a separator, and is then checked like one.
            ("/r/c/a%2fb", ok("c", "a/b", false)),
            ("/r/pypi/simple/hello-odi/", ok("pypi", "simple/hello-odi/index.html", false)),
        ];
        for (raw, want) in cases {
            assert_eq!(parse_artifact_path(raw), want, "{raw}");
        }
    }

    #[test]
    fn rejects_hostile_spellings() {
        use PathError::*;
        let cases: &[(&str, PathError)] = &[
            ("/", NotArtifactPath),
            ("/r", NotArtifactPath),
            ("/x/c/a", NotArtifactPath),
            ("/R/c/a", NotArtifactPath),
            ("/r/", EmptySegment),
            ("/r/c", MissingArtifact),
            ("/r/c/", MissingArtifact),
            ("/r//etc/passwd", EmptySegment),
            ("/r/c//etc/passwd", EmptySegment),
            ("/r/c/a//b", EmptySegment),
            ("/r/c/a//", EmptySegment),
            ("/r/c/../../etc/passwd", DotSegment),
            ("/r/c/a/../b", DotSegment),
            ("/r/c/./a", DotSegment),
            ("/r/c/a/.", DotSegment),
            ("/r/c/..", DotSegment),
            ("/r/../x", DotSegment),
            ("/r/./x", DotSegment),
            ("/r/%2e%2e/x", DotSegment),
            ("/r/c/%2e%2e/x", DotSegment),
            ("/r/c/%2E%2E/x", DotSegment),
            ("/r/c/.%2e/x", DotSegment),
            ("/r/c/%2e/x", DotSegment),
            ("/r/c/..%2fx", DotSegment),
            ("/r/c/a%2f..%2f..%2fx", DotSegment),
            ("/r/c/%2fetc/passwd", EmptySegment),
            ("/r/%2fetc/passwd", EmptySegment),
            ("/r/c/a%00.whl", ControlChar),
            ("/r/c/a\0b", ControlChar),
            ("/r/c/a%0ab", ControlChar),
            ("/r/c/a%0d%0aSet-Cookie:x", ControlChar),
            ("/r/c/a%7fb", ControlChar),
            ("/r/c/a%c2%85b", ControlChar), // U+0085 NEL
            ("/r/c/a\\b", Backslash),
            ("/r/c/..\\..\\x", Backslash),
            ("/r/c/a%5cb", Backslash),
            ("/r/c/%5c..%5cx", Backslash),
            ("/r/c/%252e%252e/x", DoubleEncoded),
            ("/r/c/%25", DoubleEncoded),
            ("/r/c/%25%32%65", DoubleEncoded),
            ("/r/c/%", BadPercentEncoding),
            ("/r/c/%2", BadPercentEncoding),
            ("/r/c/%zz", BadPercentEncoding),
            ("/r/c/%%32e", BadPercentEncoding),
            ("/r/c/%c0%ae%c0%ae/x", NotUtf8), // overlong '.'
            ("/r/c/%c0%af", NotUtf8),         // overlong '/'
            ("/r/c/%e0%80%ae", NotUtf8),      // 3-byte overlong '.'
            ("/r/c/%ff", NotUtf8),
            ("/r/c/%ed%a0%80", NotUtf8), // UTF-16 surrogate
            ("/r/c%20d/x", BadCatalog),
            ("/r/c:d/x", BadCatalog),
            ("/r/%E2%9C%93/x", BadCatalog),
            ("/r/c/.meta4", EmptySegment),
            ("/r/c/a/.meta4", EmptySegment),
            ("/r/c/...meta4", DotSegment),
        ];
        for (raw, want) in cases {
            assert_eq!(parse_artifact_path(raw), Err(want.clone()), "{raw}");
        }
    }

    #[test]
    fn overlong_input_is_refused_cheaply() {
        let raw = format!("/r/c/{}", "a".repeat(MAX_PATH_LEN));
        assert_eq!(parse_artifact_path(&raw), Err(PathError::TooLong));
        assert_eq!(PathError::TooLong.status(), StatusCode::URI_TOO_LONG);
        assert_eq!(PathError::DotSegment.status(), StatusCode::BAD_REQUEST);
        assert_eq!(PathError::NotArtifactPath.status(), StatusCode::NOT_FOUND);
    }
}
