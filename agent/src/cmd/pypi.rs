//! `odi catalog import --format pypi`: the files of a Python package index, from the hashes its
//! own pages carry. `--from` is the folder or URL holding `simple/`; every catalog path is
//! relative to it, so relays pull from the same layout.
//!
//! Read: the root page (`simple/index.html`), each project's page (`simple/<project>/
//! index.html`), and every file they link. Pages are PEP 503 HTML (a link's `#sha256=`
//! fragment, `data-core-metadata` for the `.metadata` file pip fetches first) or PEP 691 JSON
//! (`hashes.sha256`, `size`, `core-metadata`). The pages are listed too, as the files relays
//! serve at folder URLs (`simple/<project>/` answers `index.html`); a remote index that only
//! answers the folder URL has its files imported but its pages left out, with a warning, since
//! no relay could fetch them.
//!
//! Refused, naming the page and link: a file without a SHA-256 (the importer lists only what
//! the index vouches for), a link outside `--from`, one path with two different hashes.

use std::collections::BTreeMap;

use super::catalog::NewEntry;
use super::remote::{anchors, digest, Source};
use super::CmdError;

const JSON_TYPE: &str = "application/vnd.pypi.simple.v1+json";
const ACCEPT: &str = "application/vnd.pypi.simple.v1+json, text/html;q=0.5";

/// What an import found.
#[derive(Debug, Default)]
pub struct Found {
    /// Files and pages, by catalog path.
    pub entries: Vec<NewEntry>,
    /// Things the maintainer should know that did not stop the import.
    pub warnings: Vec<String>,
}

/// One file a page links, before its size is known.
#[derive(Debug, PartialEq)]
struct Link {
    href: String,
    sha256: [u8; 32],
    size: Option<u64>,
    /// The SHA-256 of the file's core metadata (served at `<file>.metadata`), when advertised.
    metadata: Option<[u8; 32]>,
}

/// PEP 503 normalised project name: lowercase, runs of `-`, `_` and `.` as one `-`.
pub fn normalise(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

fn hex32(h: &str, what: &str) -> Result<[u8; 32], CmdError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(h.trim(), &mut out)
        .map_err(|_| CmdError::Usage(format!("{what}: `{h}` is not a SHA-256")))?;
    Ok(out)
}

fn is_json(bytes: &[u8], kind: Option<&str>) -> bool {
    kind.is_some_and(|k| k == JSON_TYPE || k == "application/json")
        || bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// The project names of a root page.
fn projects(bytes: &[u8], kind: Option<&str>, what: &str) -> Result<Vec<String>, CmdError> {
    let bad = |e: String| CmdError::Usage(format!("{what}: {e}"));
    if is_json(bytes, kind) {
        let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        let list = v["projects"].as_array().ok_or_else(|| bad("no `projects` list".into()))?;
        return list
            .iter()
            .map(|p| {
                p["name"]
                    .as_str()
                    .map(normalise)
                    .ok_or_else(|| bad("a project without a `name`".into()))
            })
            .collect();
    }
    let text = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8".into()))?;
    let mut out = Vec::new();
    for a in anchors(text) {
        let Some((_, href)) = a.iter().find(|(k, _)| k == "href") else { continue };
        // `hello-odi/`, `/simple/hello-odi/` or `../simple/hello-odi/`: the last segment.
        let name = href.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        if !name.is_empty() {
            out.push(normalise(name));
        }
    }
    Ok(out)
}

/// The file links of a project page.
fn links(bytes: &[u8], kind: Option<&str>, what: &str) -> Result<Vec<Link>, CmdError> {
    let bad = |e: String| CmdError::Usage(format!("{what}: {e}"));
    if is_json(bytes, kind) {
        let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        let files = v["files"].as_array().ok_or_else(|| bad("no `files` list".into()))?;
        let mut out = Vec::new();
        for f in files {
            let name = f["filename"].as_str().unwrap_or("?");
            let href = f["url"].as_str().ok_or_else(|| bad(format!("{name}: no `url`")))?;
            let sha = f["hashes"]["sha256"].as_str().ok_or_else(|| {
                bad(format!(
                    "{name}: no SHA-256 in `hashes` (only files the index hashes are listed)"
                ))
            })?;
            let meta = f.get("core-metadata").or_else(|| f.get("dist-info-metadata"));
            let metadata = match meta.and_then(|m| m.get("sha256")).and_then(|h| h.as_str()) {
                Some(h) => Some(hex32(h, &format!("{what}: {name} metadata"))?),
                None => None,
            };
            out.push(Link {
                href: href.to_owned(),
                sha256: hex32(sha, &format!("{what}: {name}"))?,
                size: f["size"].as_u64(),
                metadata,
            });
        }
        return Ok(out);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8".into()))?;
    let mut out = Vec::new();
    for a in anchors(text) {
        let attr = |k: &str| a.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let Some(href) = attr("href") else { continue };
        let (target, fragment) = href.split_once('#').unwrap_or((href, ""));
        let sha = fragment.strip_prefix("sha256=").ok_or_else(|| {
            bad(format!(
                "link `{href}` carries no `#sha256=` (only files the index hashes are listed)"
            ))
        })?;
        let meta = attr("data-core-metadata").or_else(|| attr("data-dist-info-metadata"));
        let metadata = match meta.and_then(|m| m.strip_prefix("sha256=")) {
            Some(h) => Some(hex32(h, &format!("{what}: {target} metadata"))?),
            None => None,
        };
        out.push(Link {
            href: target.to_owned(),
            sha256: hex32(sha, &format!("{what}: {target}"))?,
            size: None,
            metadata,
        });
    }
    Ok(out)
}

/// A page: read at `<folder>index.html` (what relays fetch), or, from a remote index that has
/// no such file, at the folder URL with content negotiation. `listed` says which.
struct Page {
    bytes: Vec<u8>,
    kind: Option<String>,
    listed: bool,
}

fn page(source: &Source, folder: &str) -> Result<Option<Page>, CmdError> {
    if let Some((bytes, kind)) = source.get_typed(&format!("{folder}index.html"), None)? {
        return Ok(Some(Page { bytes, kind, listed: true }));
    }
    if source.remote() {
        if let Some((bytes, kind)) = source.get_typed(folder, Some(ACCEPT))? {
            return Ok(Some(Page { bytes, kind, listed: false }));
        }
    }
    Ok(None)
}

/// Every page and file of the index at `source`.
pub fn import(source: &Source) -> Result<Found, CmdError> {
    let base = source.base_url()?;
    let mut found = Found::default();
    let mut out: BTreeMap<String, NewEntry> = BTreeMap::new();
    let mut add = |e: NewEntry| -> Result<(), CmdError> {
        match out.get(&e.path) {
            Some(old) if old.sha256 != e.sha256 => Err(CmdError::Usage(format!(
                "{}: linked with two different SHA-256 hashes",
                e.path
            ))),
            _ => {
                out.insert(e.path.clone(), e);
                Ok(())
            }
        }
    };
    let root = page(source, "simple/")?.ok_or_else(|| {
        CmdError::Usage(format!(
            "{}: no simple index (expected simple/index.html)",
            source.place("simple/")
        ))
    })?;
    let mut unlisted = Vec::new();
    if root.listed {
        let (size, sha256) = digest(&root.bytes);
        add(NewEntry { path: "simple/index.html".into(), size, sha256 })?;
    } else {
        unlisted.push("simple/".to_owned());
    }
    let mut names = projects(&root.bytes, root.kind.as_deref(), &source.place("simple/"))?;
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Err(CmdError::Usage(format!("{}: lists no projects", source.place("simple/"))));
    }
    for name in names {
        let folder = format!("simple/{name}/");
        let what = source.place(&folder);
        let p = page(source, &folder)?.ok_or_else(|| {
            CmdError::Usage(format!("{what}: listed in the root page, not found"))
        })?;
        if p.listed {
            let (size, sha256) = digest(&p.bytes);
            add(NewEntry { path: format!("{folder}index.html"), size, sha256 })?;
        } else {
            unlisted.push(folder.clone());
        }
        let page_url = base.join(&folder).map_err(|e| CmdError::Usage(format!("{what}: {e}")))?;
        for l in links(&p.bytes, p.kind.as_deref(), &what)? {
            let url = page_url
                .join(&l.href)
                .map_err(|e| CmdError::Usage(format!("{what}: link `{}`: {e}", l.href)))?;
            let rel = source.rel_of(&base, &url).ok_or_else(|| {
                CmdError::Usage(format!(
                    "{what}: link `{}` points outside {} (a catalog lists only what its origin serves)",
                    l.href,
                    source.place("")
                ))
            })?;
            let size = match l.size {
                Some(s) => s,
                None => source.size(&rel)?,
            };
            if let Some(meta) = l.metadata {
                let mrel = format!("{rel}.metadata");
                let msize = source.size(&mrel)?;
                add(NewEntry { path: mrel, size: msize, sha256: meta })?;
            }
            add(NewEntry { path: rel, size, sha256: l.sha256 })?;
        }
    }
    if !unlisted.is_empty() {
        found.warnings.push(format!(
            "{} index page(s) are not listed because the origin serves them only at folder URLs, not as index.html files relays can fetch (first: {}); pip must read pages from the origin",
            unlisted.len(),
            unlisted[0]
        ));
    }
    found.entries = out.into_values().collect();
    Ok(found)
}

/// Whether a catalog path is one of the index's pages, which change as releases are added.
pub fn is_mutable(path: &str) -> bool {
    path.starts_with("simple/") && path.ends_with("/index.html")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised() {
        for (a, b) in
            [("Hello_ODI", "hello-odi"), ("a.-_b", "a-b"), ("zope.interface", "zope-interface")]
        {
            assert_eq!(normalise(a), b);
        }
    }

    #[test]
    fn html_and_json_pages() {
        let h = "ab".repeat(32);
        let html = format!(
            r#"<html><body><a href="../../packages/x-1.0-py3-none-any.whl#sha256={h}" data-core-metadata="sha256={h}">x</a></body></html>"#
        );
        let l = links(html.as_bytes(), None, "p").unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].href, "../../packages/x-1.0-py3-none-any.whl");
        assert_eq!((l[0].sha256, l[0].metadata), ([0xab; 32], Some([0xab; 32])));
        let json = format!(
            r#"{{"meta":{{"api-version":"1.1"}},"name":"x","files":[{{"filename":"x.whl","url":"../../p/x.whl","hashes":{{"sha256":"{h}"}},"size":12}}]}}"#
        );
        let l = links(json.as_bytes(), Some(JSON_TYPE), "p").unwrap();
        assert_eq!(
            (l[0].href.as_str(), l[0].size, l[0].metadata),
            ("../../p/x.whl", Some(12), None)
        );
        let root = r#"{"meta":{"api-version":"1.0"},"projects":[{"name":"Hello_ODI"}]}"#;
        assert_eq!(projects(root.as_bytes(), None, "r").unwrap(), ["hello-odi"]);
        let root = r#"<a href="/simple/Six/">Six</a><a href="dateutil/">d</a>"#;
        assert_eq!(projects(root.as_bytes(), None, "r").unwrap(), ["six", "dateutil"]);
    }

    #[test]
    fn bad_pages_are_refused_naming_the_link() {
        let h = "ab".repeat(32);
        let bad = [
            ("<a href=\"x.whl\">x</a>".to_owned(), "carries no `#sha256=`"),
            ("<a href=\"x.whl#md5=00\">x</a>".to_owned(), "carries no `#sha256=`"),
            ("<a href=\"x.whl#sha256=zz\">x</a>".to_owned(), "is not a SHA-256"),
            (
                format!("<a href=\"x.whl#sha256={h}\" data-core-metadata=\"sha256=12\">x</a>"),
                "is not a SHA-256",
            ),
            (r#"{"files":[{"filename":"x","url":"x"}]}"#.to_owned(), "no SHA-256"),
            (r#"{"files":[{"filename":"x","hashes":{}}]}"#.to_owned(), "no `url`"),
            (r#"{"files": 3}"#.to_owned(), "no `files` list"),
            ("{not json".to_owned(), "page.html"),
        ];
        for (page, want) in bad {
            let e = links(page.as_bytes(), None, "page.html").unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("page.html"), "{page}: {e}");
        }
    }
}
