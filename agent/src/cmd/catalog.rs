//! Publishing: `odi catalog new|add|import|expunge` write catalog and release files from files,
//! folders and checksum lists, so maintainers never write catalog TOML by hand.
//!
//! Every command that changes a document raises its serial, writes it in a stable form
//! (entries sorted by path, the same TOML for the same content) so that pull-request diffs are
//! reviewable, signs it with the given key, and, given the snapshot key, re-signs the snapshot.
//! A published path is immutable: other bytes under a listed path are refused, naming the path,
//! unless the maintainer asks to replace them.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};

use odi_network::raw::{ArtifactEntry, CatalogFile, ImportRecord, ReleaseFile, Sha256, Timestamp};
use odi_network::safe_path::{check_name, ArtifactPath};
use odi_network::signature::SecretKey;
use rayon::prelude::*;
use serde::de::DeserializeOwned;

use super::{io_err, CmdError};

/// Release files written by an import hold at most this many entries unless told otherwise:
/// small enough that one changed release costs little to verify and to review.
pub const DEFAULT_MAX_PER_FILE: usize = 10_000;

/// A maintainer's signing key.
pub struct Signer(SecretKey);

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

impl Signer {
    /// Reads a minisign secret key (`ODI_KEY_PASSWORD` unlocks an encrypted one).
    pub fn load(path: &Path) -> Result<Self, CmdError> {
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        Ok(Self(SecretKey::parse(&text, std::env::var("ODI_KEY_PASSWORD").ok())?))
    }
}

/// What a command changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Entries added.
    pub added: usize,
    /// Entries already listed with the same bytes, left alone.
    pub unchanged: usize,
    /// Entries whose bytes were replaced (`--replace`) or that were expunged.
    pub changed: usize,
    /// Paths still listed that the index no longer names (sync; left listed).
    pub gone: usize,
    /// Documents written, repository-relative.
    pub written: Vec<String>,
}

fn catalog_rel(name: &str) -> String {
    format!("catalogs/{name}/catalog.toml")
}

fn release_rel(name: &str, release: &str) -> String {
    format!("catalogs/{name}/releases/{release}.toml")
}

fn read_doc<T: DeserializeOwned>(repo: &Path, rel: &str) -> Result<Option<T>, CmdError> {
    let path = repo.join(rel);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            toml::from_str(&text).map(Some).map_err(|e| CmdError::Usage(format!("{rel}: {e}")))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CmdError::Io { path, source: e }),
    }
}

/// Writes `value` as TOML at `rel` and its signature beside it.
/// The TOML text of a catalog or release file whose artifacts were taken out (`header`, with
/// an empty list) and are given as `artifacts`: exactly what `toml::to_string` writes for the
/// whole, but one entry at a time. Serialising a 100,000-entry file whole builds a document
/// tree of about 2 KiB per entry (over 200 MiB; `bench/catalog-add.sh`).
fn doc_text(
    rel: &str,
    header: &impl serde::Serialize,
    artifacts: &[ArtifactEntry],
) -> Result<String, CmdError> {
    let err = |e: toml::ser::Error| CmdError::Usage(format!("{rel}: {e}"));
    let mut text = toml::to_string(header).map_err(err)?;
    if artifacts.is_empty() {
        return Ok(text);
    }
    // The empty list is a top-level line (before any table such as `[import]`); arrays of
    // tables go after every table, as the serialiser puts them.
    const EMPTY: &str = "artifacts = []\n";
    let at = if text.starts_with(EMPTY) {
        Some(0)
    } else {
        text.find("\nartifacts = []\n").map(|i| i + 1)
    };
    let Some(at) = at else {
        return Err(CmdError::Usage(format!("{rel}: unexpected TOML layout of the header")));
    };
    text.replace_range(at..at + EMPTY.len(), "");
    for a in artifacts {
        text.push_str("\n[[artifacts]]\n");
        text.push_str(&toml::to_string(a).map_err(err)?);
    }
    Ok(text)
}

fn write_signed(repo: &Path, rel: &str, text: &str, signer: &Signer) -> Result<(), CmdError> {
    let path = repo.join(rel);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    std::fs::write(&path, text).map_err(io_err(&path))?;
    let ts = time::OffsetDateTime::now_utc().unix_timestamp();
    let sig = signer.0.sign(text.as_bytes(), &format!("timestamp:{ts}\tfile:{rel}"))?;
    let sig_path = repo.join(format!("{rel}.minisig"));
    std::fs::write(&sig_path, sig).map_err(io_err(&sig_path))
}

fn check_catalog_name(name: &str) -> Result<(), CmdError> {
    check_name(name).map_err(|why| CmdError::Usage(format!("catalog name `{name}`: {why}")))
}

/// `odi catalog new`: `catalogs/NAME/catalog.toml` with no artifacts yet.
pub fn new(
    repo: &Path,
    name: &str,
    description: &str,
    origins: &[String],
    tags: &[String],
    replicas: u32,
    signer: &Signer,
) -> Result<Report, CmdError> {
    check_catalog_name(name)?;
    let rel = catalog_rel(name);
    if repo.join(&rel).exists() {
        return Err(CmdError::Usage(format!("{rel} exists")));
    }
    if origins.is_empty() {
        return Err(CmdError::Usage(
            "give at least one --origin (where relays pull the bytes from)".into(),
        ));
    }
    for o in origins {
        let ok = url::Url::parse(o).is_ok_and(|u| matches!(u.scheme(), "https" | "http" | "file"));
        if !ok {
            return Err(CmdError::Usage(format!(
                "--origin {o}: expected an https://, http:// or file:// URL"
            )));
        }
    }
    if replicas == 0 {
        return Err(CmdError::Usage("--replicas must be at least 1".into()));
    }
    let mut tags = tags.to_vec();
    tags.sort();
    tags.dedup();
    let file = CatalogFile {
        serial: 1,
        name: name.to_owned(),
        description: if description.is_empty() {
            format!("The {name} catalog")
        } else {
            description.to_owned()
        },
        tags,
        origins: origins.to_vec(),
        replicas,
        import: None,
        artifacts: Vec::new(),
    };
    write_signed(repo, &rel, &doc_text(&rel, &file, &[])?, signer)?;
    Ok(Report { written: vec![rel], ..Report::default() })
}

/// The catalog file and its release files, by repository-relative path.
struct Docs {
    catalog: CatalogFile,
    releases: BTreeMap<String, ReleaseFile>,
}

/// The catalog file of `name`, or an error saying how to create it.
pub fn load_catalog(repo: &Path, name: &str) -> Result<CatalogFile, CmdError> {
    check_catalog_name(name)?;
    let rel = catalog_rel(name);
    read_doc(repo, &rel)?.ok_or_else(|| {
        CmdError::Usage(format!("no catalog `{name}` ({rel}); create it with `odi catalog new`"))
    })
}

/// Every path catalog `name` lists, in its catalog file and release files.
pub fn listed_paths(repo: &Path, name: &str) -> Result<Vec<String>, CmdError> {
    Ok(load_docs(repo, name)?.index(name).into_keys().collect())
}

fn load_docs(repo: &Path, name: &str) -> Result<Docs, CmdError> {
    let catalog = load_catalog(repo, name)?;
    let mut releases = BTreeMap::new();
    let dir = repo.join(format!("catalogs/{name}"));
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "toml")
                && p.file_name().is_some_and(|n| n != "catalog.toml")
            {
                let rel = p.strip_prefix(repo).unwrap_or(&p).to_string_lossy().replace('\\', "/");
                if let Some(r) = read_doc::<ReleaseFile>(repo, &rel)? {
                    releases.insert(rel, r);
                }
            }
        }
    }
    Ok(Docs { catalog, releases })
}

impl Docs {
    /// Where each listed path is: (document, index), and its entry.
    fn index(&self, name: &str) -> BTreeMap<String, (String, Sha256)> {
        let mut out = BTreeMap::new();
        for a in &self.catalog.artifacts {
            out.insert(a.path.to_string(), (catalog_rel(name), a.sha256));
        }
        for (rel, r) in &self.releases {
            for a in &r.artifacts {
                out.insert(a.path.to_string(), (rel.clone(), a.sha256));
            }
        }
        out
    }

    fn entries_mut(&mut self, name: &str, rel: &str) -> Option<&mut Vec<ArtifactEntry>> {
        if rel == catalog_rel(name) {
            Some(&mut self.catalog.artifacts)
        } else {
            self.releases.get_mut(rel).map(|r| &mut r.artifacts)
        }
    }

    /// Raises the serial of, sorts and signs every document in `touched`.
    fn write(
        &mut self,
        repo: &Path,
        name: &str,
        touched: &[String],
        signer: &Signer,
    ) -> Result<(), CmdError> {
        for rel in touched {
            if *rel == catalog_rel(name) {
                self.catalog.serial += 1;
                self.catalog.artifacts.sort_by(|a, b| a.path.cmp(&b.path));
                let arts = std::mem::take(&mut self.catalog.artifacts);
                let text = doc_text(rel, &self.catalog, &arts);
                self.catalog.artifacts = arts;
                write_signed(repo, rel, &text?, signer)?;
            } else if let Some(r) = self.releases.get_mut(rel) {
                r.serial += 1;
                r.artifacts.sort_by(|a, b| a.path.cmp(&b.path));
                let arts = std::mem::take(&mut r.artifacts);
                let text = doc_text(rel, &*r, &arts);
                r.artifacts = arts;
                write_signed(repo, rel, &text?, signer)?;
            }
        }
        Ok(())
    }
}

/// One artifact to list: its path in the catalog, size and hash.
#[derive(Debug, Clone)]
pub struct NewEntry {
    /// Path inside the catalog.
    pub path: String,
    /// Exact size in bytes.
    pub size: u64,
    /// SHA-256 of the bytes.
    pub sha256: [u8; 32],
}

/// How [`list`] places and checks entries.
#[derive(Default)]
pub struct ListOptions<'a> {
    /// Put new entries into `catalogs/NAME/releases/RELEASE.toml` (created when missing).
    pub release: Option<&'a str>,
    /// Without `release`: put new entries into release files `<prefix>-NNNN` of at most this
    /// many entries each, filling the last existing one first (so a sync that finds one new
    /// file changes one document). Without either, new entries go into the catalog file.
    pub split: Option<(&'a str, usize)>,
    /// Publication time of new and replaced entries.
    pub published: Option<Timestamp>,
    /// Allow other bytes under any listed path.
    pub replace: bool,
    /// Paths whose bytes may change without `replace`: an index format's own index files.
    pub mutable: Option<&'a dyn Fn(&str) -> bool>,
    /// Record (or update) how the catalog was imported.
    pub record: Option<ImportRecord>,
}

impl std::fmt::Debug for ListOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListOptions")
            .field("release", &self.release)
            .field("split", &self.split)
            .field("replace", &self.replace)
            .field("mutable", &self.mutable.is_some())
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

/// Lists `entries` in catalog `name`, placed as `opts` says. Listed paths with the same bytes
/// are left alone; with other bytes they are refused, naming each, unless `opts` allows it.
pub fn list(
    repo: &Path,
    name: &str,
    entries: Vec<NewEntry>,
    opts: &ListOptions<'_>,
    signer: &Signer,
) -> Result<Report, CmdError> {
    let ListOptions { release, split, published, replace, mutable, .. } = *opts;
    let mut docs = load_docs(repo, name)?;
    let index = docs.index(name);
    let mut report = Report::default();
    let mut fresh = Vec::new();
    let mut touched: Vec<String> = Vec::new();
    let mut conflicts = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for e in entries {
        let path = ArtifactPath::new(&e.path)
            .map_err(|why| CmdError::Usage(format!("`{}`: {why}", e.path)))?;
        if !seen.insert(e.path.clone()) {
            return Err(CmdError::Usage(format!("`{}` is given twice", e.path)));
        }
        match index.get(&e.path) {
            Some((_, sha)) if sha.0 == e.sha256 => report.unchanged += 1,
            Some((rel, _)) if replace || mutable.is_some_and(|m| m(&e.path)) => {
                let list = docs.entries_mut(name, rel).ok_or_else(|| CmdError::Usage(format!("{rel}: not found")))?;
                if let Some(a) = list.iter_mut().find(|a| a.path.as_str() == e.path) {
                    a.sha256 = Sha256(e.sha256);
                    a.size = e.size;
                    a.expunged = None;
                    if published.is_some() {
                        a.published = published;
                    }
                }
                report.changed += 1;
                if !touched.contains(rel) {
                    touched.push(rel.clone());
                }
            }
            Some((rel, _)) => conflicts.push(format!(
                "{}: already published in {rel} with other bytes (a published path is immutable: publish a new path, expunge it, or pass --replace)",
                e.path
            )),
            None => fresh.push(ArtifactEntry { path, size: e.size, sha256: Sha256(e.sha256), published, expunged: None }),
        }
    }
    if !conflicts.is_empty() {
        return Err(CmdError::Usage(conflicts.join("\n")));
    }
    report.added = fresh.len();
    if !fresh.is_empty() {
        fresh.sort_by(|a, b| a.path.cmp(&b.path));
        match (release, split) {
            (Some(r), _) => {
                check_name(r)
                    .map_err(|why| CmdError::Usage(format!("release name `{r}`: {why}")))?;
                let rel = release_rel(name, r);
                let file = docs.releases.entry(rel.clone()).or_insert_with(|| ReleaseFile {
                    serial: 0,
                    catalog: name.to_owned(),
                    artifacts: Vec::new(),
                });
                file.artifacts.extend(fresh);
                touched.push(rel);
            }
            (None, Some((prefix, max))) => {
                let max = max.max(1);
                let numbered = |i: usize| release_rel(name, &format!("{prefix}-{i:04}"));
                let first = (1..).find(|&i| !docs.releases.contains_key(&numbered(i))).unwrap_or(1);
                // Top up the last file before starting a new one.
                if first > 1 {
                    let last = numbered(first - 1);
                    if let Some(file) = docs.releases.get_mut(&last) {
                        let room = max.saturating_sub(file.artifacts.len()).min(fresh.len());
                        if room > 0 {
                            file.artifacts.extend(fresh.drain(..room));
                            touched.push(last);
                        }
                    }
                }
                for (n, chunk) in (first..).zip(fresh.chunks(max)) {
                    let rel = release_rel(name, &format!("{prefix}-{n:04}"));
                    docs.releases.insert(
                        rel.clone(),
                        ReleaseFile {
                            serial: 0,
                            catalog: name.to_owned(),
                            artifacts: chunk.to_vec(),
                        },
                    );
                    touched.push(rel);
                }
            }
            (None, None) => {
                docs.catalog.artifacts.extend(fresh);
                let rel = catalog_rel(name);
                if !touched.contains(&rel) {
                    touched.push(rel);
                }
            }
        }
    }
    if let Some(record) = &opts.record {
        if docs.catalog.import.as_ref() != Some(record) {
            docs.catalog.import = Some(record.clone());
            touched.push(catalog_rel(name));
        }
    }
    touched.sort();
    touched.dedup();
    docs.write(repo, name, &touched, signer)?;
    report.written = touched;
    Ok(report)
}

/// `odi catalog expunge`: marks `path` withdrawn with `reason` wherever it is listed.
pub fn expunge(
    repo: &Path,
    name: &str,
    path: &str,
    reason: &str,
    signer: &Signer,
) -> Result<Report, CmdError> {
    if reason.trim().is_empty() {
        return Err(CmdError::Usage("--reason must say why (agents and clients show it)".into()));
    }
    let mut docs = load_docs(repo, name)?;
    let index = docs.index(name);
    let Some((rel, _)) = index.get(path).cloned() else {
        return Err(CmdError::Usage(format!("`{path}` is not listed in catalog `{name}`")));
    };
    let list =
        docs.entries_mut(name, &rel).ok_or_else(|| CmdError::Usage(format!("{rel}: not found")))?;
    let entry = list
        .iter_mut()
        .find(|a| a.path.as_str() == path)
        .ok_or_else(|| CmdError::Usage(format!("{path}: not found")))?;
    if entry.expunged.as_deref() == Some(reason) {
        return Ok(Report { unchanged: 1, ..Report::default() });
    }
    entry.expunged = Some(reason.to_owned());
    docs.write(repo, name, std::slice::from_ref(&rel), signer)?;
    Ok(Report { changed: 1, written: vec![rel], ..Report::default() })
}

/// Every regular file under `path` (or `path` itself), with its path relative to the folder
/// given (or its file name), sorted. Symlinks are refused: what is published is what is there.
pub fn walk(path: &Path) -> Result<Vec<(String, PathBuf)>, CmdError> {
    let meta = std::fs::symlink_metadata(path).map_err(io_err(path))?;
    if meta.is_file() {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        return Ok(vec![(name, path.to_owned())]);
    }
    if !meta.is_dir() {
        return Err(CmdError::Usage(format!("{}: not a regular file or folder", path.display())));
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(io_err(&d))? {
            let e = e.map_err(io_err(&d))?;
            let p = e.path();
            let t = e.file_type().map_err(io_err(&p))?;
            if t.is_dir() {
                stack.push(p);
            } else if t.is_file() {
                let rel = p.strip_prefix(path).unwrap_or(&p).to_string_lossy().replace('\\', "/");
                out.push((rel, p));
            } else {
                return Err(CmdError::Usage(format!(
                    "{}: symlinks and special files are not published",
                    p.display()
                )));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Hashes `files` on every core, streaming each (bounded memory), with a progress bar on a
/// terminal and none otherwise. `prefix` is prepended to every catalog path.
pub fn hash_files(files: Vec<(String, PathBuf)>, prefix: &str) -> Result<Vec<NewEntry>, CmdError> {
    // The total is only for the bar: off a terminal, no stat of every file first.
    let bar = if std::io::stderr().is_terminal() {
        let total: u64 =
            files.par_iter().filter_map(|(_, p)| std::fs::metadata(p).ok()).map(|m| m.len()).sum();
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "hashing {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let prefix = prefix.trim_matches('/');
    let out: Result<Vec<NewEntry>, CmdError> = files
        .into_par_iter()
        .map(|(rel, p)| {
            let (size, sha256) = hash_counting(&p, &bar)?;
            let path = if prefix.is_empty() { rel } else { format!("{prefix}/{rel}") };
            Ok(NewEntry { path, size, sha256 })
        })
        .collect();
    bar.finish_and_clear();
    out
}

fn hash_counting(path: &Path, bar: &indicatif::ProgressBar) -> Result<(u64, [u8; 32]), CmdError> {
    thread_local! {
        // One read buffer per hashing thread (rayon's, one per core), kept across files.
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUF.with_borrow_mut(|buf| {
        if buf.is_empty() {
            buf.resize(1 << 20, 0);
        }
        crate::store::hash_file_with(path, buf, |n| bar.inc(n)).map_err(io_err(path))
    })
}

/// One line of `sha256sum` output, GNU (`<hex>  <path>`, `<hex> *<path>`) or BSD / `--tag`
/// (`SHA256 (<path>) = <hex>`): (path, hash). Blank lines and `#` comments are `None`.
pub fn parse_sum_line(line: &str) -> Result<Option<(String, [u8; 32])>, String> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let hex_of = |h: &str| -> Result<[u8; 32], String> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(h.trim(), &mut out)
            .map_err(|_| format!("`{}` is not a SHA-256", h.trim()))?;
        Ok(out)
    };
    if let Some(rest) = line.strip_prefix("SHA256 (") {
        let (path, hash) = rest.rsplit_once(") = ").ok_or("BSD line without `) = `")?;
        return Ok(Some((path.to_owned(), hex_of(hash)?)));
    }
    if line.starts_with('\\') {
        return Err("escaped file names (a backslash first) are not supported".into());
    }
    let (hash, rest) = line.split_at(line.find(' ').ok_or("expected `<sha256>  <path>`")?);
    let path = rest
        .strip_prefix("  ")
        .or_else(|| rest.strip_prefix(" *"))
        .ok_or("expected two spaces or ` *` after the hash")?;
    Ok(Some((path.to_owned(), hex_of(hash)?)))
}

/// The client every remote read of the publishing commands uses, built once per command.
pub(crate) fn client() -> Result<reqwest::blocking::Client, CmdError> {
    crate::fetch::blocking_client(std::time::Duration::from_secs(120))
        .map_err(|e| CmdError::Usage(e.to_string()))
}

/// Reads a `sha256sum` list from a file or an `http(s)://` URL; sizes come from the files
/// beside a local list, or from a `HEAD` of each file beside a remote one.
pub fn read_sums(from: &str) -> Result<Vec<NewEntry>, CmdError> {
    let remote = from.starts_with("http://") || from.starts_with("https://");
    let client = client()?;
    let text = if remote {
        let r = client
            .get(from)
            .send()
            .and_then(|r| r.error_for_status())
            .map_err(|e| CmdError::Usage(format!("{from}: {e}")))?;
        r.text().map_err(|e| CmdError::Usage(format!("{from}: {e}")))?
    } else {
        std::fs::read_to_string(from).map_err(io_err(Path::new(from)))?
    };
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        match parse_sum_line(line) {
            Ok(Some((path, sha256))) => out.push((path, sha256)),
            Ok(None) => {}
            Err(why) => problems.push(format!("{from}: line {}: {why}", i + 1)),
        }
    }
    if !problems.is_empty() {
        return Err(CmdError::Usage(problems.join("\n")));
    }
    let base_dir = Path::new(from).parent().map(Path::to_owned).unwrap_or_default();
    out.into_iter()
        .map(|(path, sha256)| {
            let rel = path.trim_start_matches("./").to_owned();
            let size = if remote {
                let base =
                    url::Url::parse(from).map_err(|e| CmdError::Usage(format!("{from}: {e}")))?;
                let url = base.join(&rel).map_err(|e| CmdError::Usage(format!("{rel}: {e}")))?;
                let r = client
                    .head(url.clone())
                    .send()
                    .and_then(|r| r.error_for_status())
                    .map_err(|e| CmdError::Usage(format!("HEAD {url}: {e}")))?;
                r.headers()
                    .get(reqwest::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .ok_or_else(|| CmdError::Usage(format!("HEAD {url}: no Content-Length")))?
            } else {
                let p = base_dir.join(&rel);
                std::fs::metadata(&p).map_err(io_err(&p))?.len()
            };
            Ok(NewEntry { path: rel, size, sha256 })
        })
        .collect()
}

/// The result of a write, for people.
pub fn describe(r: &Report) -> String {
    let mut s = format!("{} added, {} unchanged, {} changed", r.added, r.unchanged, r.changed);
    if r.gone > 0 {
        s.push_str(&format!(
            ", {} listed but no longer in the index (left listed; `odi catalog expunge` withdraws)",
            r.gone
        ));
    }
    for w in &r.written {
        s.push_str(&format!("\nwrote and signed {w}"));
    }
    s
}

/// Whether `path` (possibly not existing yet) lies inside `dir` (possibly not existing yet).
pub fn is_inside(path: &Path, dir: &Path) -> bool {
    let abs = |p: &Path| -> PathBuf {
        let p = if p.is_absolute() {
            p.to_owned()
        } else {
            std::env::current_dir().unwrap_or_default().join(p)
        };
        // Canonicalise the longest existing ancestor, then add the rest back.
        let mut existing = p.clone();
        let mut rest = Vec::new();
        while !existing.exists() {
            match (existing.file_name().map(|n| n.to_owned()), existing.parent()) {
                (Some(n), Some(parent)) => {
                    rest.push(n);
                    existing = parent.to_owned();
                }
                _ => break,
            }
        }
        let mut out = std::fs::canonicalize(&existing).unwrap_or(existing);
        for n in rest.into_iter().rev() {
            out.push(n);
        }
        out
    };
    abs(path).starts_with(abs(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_by_entry_text_is_what_the_serialiser_writes_whole() {
        let entry = |p: &str, published: bool, expunged: Option<&str>| ArtifactEntry {
            path: ArtifactPath::new(p).unwrap(),
            size: 3,
            sha256: Sha256([7; 32]),
            published: published.then(Timestamp::now),
            expunged: expunged.map(str::to_owned),
        };
        let arts = vec![
            entry("a/b c.bin", true, None),
            entry("a/\"q\".bin", false, Some("bad \"build\"\nsee #1")),
        ];
        let import = ImportRecord {
            format: odi_network::raw::ImportFormat::Apt,
            from: "https://deb.example.org/debian/".into(),
            dists: vec!["stable".into()],
        };
        for (import, arts) in [(None, vec![]), (None, arts.clone()), (Some(import), arts.clone())] {
            let mut c = CatalogFile {
                serial: 4,
                name: "c".into(),
                description: "d".into(),
                tags: vec!["t".into()],
                origins: vec!["https://example.org/".into()],
                replicas: 2,
                import,
                artifacts: arts,
            };
            let whole = toml::to_string(&c).unwrap();
            let arts = std::mem::take(&mut c.artifacts);
            assert_eq!(doc_text("c", &c, &arts).unwrap(), whole);
            let mut r = ReleaseFile { serial: 1, catalog: "c".into(), artifacts: arts };
            let whole = toml::to_string(&r).unwrap();
            let arts = std::mem::take(&mut r.artifacts);
            assert_eq!(doc_text("r", &r, &arts).unwrap(), whole);
        }
    }

    #[test]
    fn sum_lines_gnu_bsd_and_bad() {
        let h = "a".repeat(64);
        let ok = |l: &str, path: &str| {
            let (p, sha) = parse_sum_line(l).unwrap().unwrap();
            assert_eq!((p.as_str(), sha), (path, [0xaa; 32]), "{l}");
        };
        ok(&format!("{h}  dist/x-1.0.tar.gz"), "dist/x-1.0.tar.gz");
        ok(&format!("{h} *x.bin"), "x.bin");
        ok(&format!("{h}  name with spaces.txt"), "name with spaces.txt");
        ok(&format!("SHA256 (x (1).bin) = {h}"), "x (1).bin");
        ok(&format!("{h}  x.txt\r"), "x.txt");
        assert_eq!(parse_sum_line("").unwrap(), None);
        assert_eq!(parse_sum_line("# comment").unwrap(), None);
        let bad = [
            format!("{h} x.txt"),
            format!("{}  x.txt", "a".repeat(63)),
            format!("{}  x.txt", "g".repeat(64)),
            "SHA256 (x.txt) =".to_owned(),
            format!("\\{h}  x\\nbin"),
            "justonetoken".to_owned(),
        ];
        for l in bad {
            assert!(parse_sum_line(&l).is_err(), "{l:?} must be refused");
        }
    }

    #[test]
    fn inside_checks_the_real_folders() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("net");
        assert!(is_inside(&repo.join("keys"), &repo), "a folder that does not exist yet");
        assert!(is_inside(&repo.join("a/../keys"), &repo) || !repo.exists());
        assert!(!is_inside(&tmp.path().join("keys"), &repo));
        std::fs::create_dir_all(&repo).unwrap();
        assert!(is_inside(&repo.join("keys"), &repo));
        assert!(!is_inside(&tmp.path().join("net-keys"), &repo), "a sibling with a common prefix");
    }
}
