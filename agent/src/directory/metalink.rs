//! Metalink 4 documents (RFC 5854) for one artifact: its name, size and SHA-256, and the
//! URLs it can be fetched from, ranked, so that clients such as aria2 can download from
//! several relays at once and verify the result.

use std::fmt::Write as _;

/// The media type of a Metalink 4 document.
pub const CONTENT_TYPE: &str = "application/metalink4+xml";

/// One `<url>` of a Metalink file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaUrl<'a> {
    /// An absolute URL the whole file can be fetched from; XML-escaped when rendered.
    pub url: &'a str,
    /// Region, sent as the `location` attribute when it is a two-letter code.
    pub location: Option<&'a str>,
}

/// What the document describes.
#[derive(Debug, Clone)]
pub struct MetaFile<'a> {
    /// File name (the artifact's basename).
    pub name: &'a str,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the bytes.
    pub sha256: &'a [u8; 32],
    /// RFC 3339 publication time, if known.
    pub published: Option<String>,
    /// URLs, best first.
    pub urls: Vec<MetaUrl<'a>>,
    /// Piece hashes, for files of more than one piece.
    pub pieces: Option<&'a super::pieces::Pieces>,
}

/// Escapes text for XML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(c),
        }
    }
    out
}

/// Renders the document. `priority` counts from 1 (most preferred), as RFC 5854 4.2.16.4 says.
pub fn render(f: &MetaFile<'_>) -> String {
    let mut x = String::with_capacity(512 + 128 * f.urls.len());
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str("<metalink xmlns=\"urn:ietf:params:xml:ns:metalink\">\n");
    let _ = writeln!(x, "  <generator>odi/{}</generator>", env!("CARGO_PKG_VERSION"));
    if let Some(p) = &f.published {
        let _ = writeln!(x, "  <published>{}</published>", escape(p));
    }
    let _ = writeln!(x, "  <file name=\"{}\">", escape(f.name));
    let _ = writeln!(x, "    <size>{}</size>", f.size);
    let _ = writeln!(x, "    <hash type=\"sha-256\">{}</hash>", hex::encode(f.sha256));
    if let Some(p) = f.pieces {
        let _ = writeln!(x, "    <pieces length=\"{}\" type=\"sha-256\">", p.length);
        for h in &p.hashes {
            let _ = writeln!(x, "      <hash>{}</hash>", hex::encode(h));
        }
        x.push_str("    </pieces>\n");
    }
    for (i, u) in f.urls.iter().enumerate() {
        // RFC 5854 wants an ISO 3166-1 alpha-2 code; a longer region name is left out rather
        // than sent as something clients would misread.
        let loc = u.location.filter(|l| l.len() == 2 && l.bytes().all(|b| b.is_ascii_alphabetic()));
        match loc {
            Some(l) => {
                let _ = writeln!(
                    x,
                    "    <url location=\"{}\" priority=\"{}\">{}</url>",
                    l.to_ascii_lowercase(),
                    i + 1,
                    escape(u.url)
                );
            }
            None => {
                let _ = writeln!(x, "    <url priority=\"{}\">{}</url>", i + 1, escape(u.url));
            }
        }
    }
    x.push_str("  </file>\n</metalink>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_ranks() {
        let sha = [0xab; 32];
        let doc = render(&MetaFile {
            name: "a&b<\"c\">.bin",
            size: 42,
            sha256: &sha,
            published: None,
            pieces: Some(&super::super::pieces::Pieces {
                length: 4,
                hashes: vec![[1; 32], [2; 32]],
            }),
            urls: vec![
                MetaUrl { url: "https://r1.example/r/c/a&b.bin", location: Some("EU") },
                MetaUrl { url: "https://d.example/r/c/x", location: Some("north") },
            ],
        });
        assert!(doc.contains("<file name=\"a&amp;b&lt;&quot;c&quot;&gt;.bin\">"), "{doc}");
        assert!(
            doc.contains(
                "<url location=\"eu\" priority=\"1\">https://r1.example/r/c/a&amp;b.bin</url>"
            ),
            "{doc}"
        );
        assert!(doc.contains("<url priority=\"2\">https://d.example/r/c/x</url>"), "{doc}");
        assert!(doc.contains(&format!("<hash type=\"sha-256\">{}</hash>", "ab".repeat(32))));
        assert!(doc.contains("<size>42</size>"));
        let pieces = format!(
            "    <pieces length=\"4\" type=\"sha-256\">\n      <hash>{}</hash>\n      <hash>{}</hash>\n    </pieces>\n",
            "01".repeat(32),
            "02".repeat(32)
        );
        assert!(doc.contains(&pieces), "{doc}");
    }
}
