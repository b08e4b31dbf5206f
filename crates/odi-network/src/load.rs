//! From a [`Tree`] of files to a verified [`Network`]: every check an agent makes before it
//! applies a commit, in one pass that collects every problem rather than stopping at the
//! first, so that `odi validate` tells a maintainer everything at once.

use std::collections::{BTreeMap, BTreeSet};

use rayon::prelude::*;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use url::Url;

use self::listing::Listing;
use crate::git::Delta;
use crate::model::{Artifact, Catalog, Directory, Network, Relay};
use crate::problem::{self, Problem, Problems};
use crate::raw::{
    ArtifactEntry, CatalogFile, DirectoryFile, DirectoryKind, RelayFile, ReleaseFile,
};
use crate::safe_path::check_name;
use crate::tree::{BlobId, Tree};
use crate::trust::{self, Root, TrustAnchor, TrustState};

/// A verified network and the trust state to persist once it is applied.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// What the commit declares, with every signature, serial and cross-reference checked.
    pub network: Network,
    /// High-water marks including this commit's documents.
    pub state: TrustState,
    /// What the next commit reuses when it is applied with [`load_since`].
    pub memo: Memo,
}

/// What a load keeps for applying the next commit incrementally: the commit's blob ids and
/// its parsed directory and relay files (small, and every commit needs all of them; catalog
/// documents are not kept, since the network holds what they say).
#[derive(Debug, Clone, Default)]
pub struct Memo {
    ids: BTreeMap<String, BlobId>,
    nodes: BTreeMap<String, (Kind, Doc)>,
}

impl Memo {
    /// Blob id of every network file of the commit; empty when the tree was not read from git.
    pub fn ids(&self) -> &BTreeMap<String, BlobId> {
        &self.ids
    }
}

/// What a file in the tree is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Catalog { folder: String },
    Release { folder: String },
    Directory { stem: String },
    Relay { stem: String },
}

fn classify(path: &str) -> Result<Option<Kind>, &'static str> {
    if path.ends_with(".md") {
        return Ok(None);
    }
    if let Some(name) = path.strip_prefix(trust::ROOTS_DIR) {
        // Only `<serial>.toml` and its signatures: anything else would be read by nobody.
        let serial = name.split('.').next().unwrap_or("");
        let rest = &name[serial.len()..];
        let ok = !serial.is_empty()
            && serial.bytes().all(|b| b.is_ascii_digit())
            && (rest == ".toml" || (rest.starts_with(".toml.") && rest.ends_with(".minisig")));
        return if ok {
            Ok(None)
        } else {
            Err("unexpected file: trust/roots/ holds only <serial>.toml and their signatures")
        };
    }
    if path == trust::SNAPSHOT_PATH {
        return Ok(None); // the trust module reads it
    }
    if path.ends_with(".minisig") {
        return Ok(None); // checked beside the file it signs
    }
    let parts: Vec<&str> = path.split('/').collect();
    let toml_stem = |name: &str| name.strip_suffix(".toml").map(str::to_owned);
    match parts.as_slice() {
        ["catalogs", folder, "catalog.toml"] => {
            Ok(Some(Kind::Catalog { folder: (*folder).to_owned() }))
        }
        ["catalogs", folder, .., last] if parts.len() > 3 && last.ends_with(".toml") => {
            Ok(Some(Kind::Release { folder: (*folder).to_owned() }))
        }
        ["directories", name] => toml_stem(name)
            .map(|stem| Some(Kind::Directory { stem }))
            .ok_or("unexpected file: directories/ holds only <name>.toml files"),
        ["relays", name] => toml_stem(name)
            .map(|stem| Some(Kind::Relay { stem }))
            .ok_or("unexpected file: relays/ holds only <name>.toml files"),
        ["catalogs", _] => Err("unexpected file: catalogs/ holds one folder per catalog"),
        ["trust", ..] => Err(
            "unexpected file: trust/ holds only roots/<serial>.toml, snapshot.toml and their signatures",
        ),
        _ => Err("unexpected file in a network folder"),
    }
}

fn parse<T: DeserializeOwned>(path: &str, bytes: &[u8]) -> Result<T, Problem> {
    let text = std::str::from_utf8(bytes).map_err(|_| Problem::file(path, "is not UTF-8"))?;
    toml::from_str(text).map_err(|e| problem::from_toml(path, text, &e))
}

/// A catalog or release file: in pieces when it is big ([`listing`]), else whole (which also
/// names any problem).
fn parse_listing<T: Listing>(path: &str, bytes: &[u8]) -> Result<T, Problem> {
    let pieces = std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| listing::parse_in_pieces(text, listing::PIECE));
    pieces.map_or_else(|| parse(path, bytes), Ok)
}

#[derive(Debug, Clone)]
enum Doc {
    Catalog(CatalogFile),
    Release(ReleaseFile),
    Directory(DirectoryFile),
    Relay(RelayFile),
}

impl Doc {
    fn serial(&self) -> u64 {
        match self {
            Doc::Catalog(d) => d.serial,
            Doc::Release(d) => d.serial,
            Doc::Directory(d) => d.serial,
            Doc::Relay(d) => d.serial,
        }
    }
}

/// How much of a commit [`load_with`] checks.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// Leave out the snapshot role's checks: for a pull request, whose snapshot the network's
    /// CI writes only after the merge. Agents never set this.
    pub skip_snapshot: bool,
}

/// Verifies and loads the network in `tree`, with every check (see [`load_with`]).
pub fn load(
    tree: &Tree,
    anchor: &TrustAnchor,
    state: &TrustState,
    now: OffsetDateTime,
) -> Result<Loaded, Problems> {
    load_with(tree, anchor, state, now, LoadOptions::default())
}

/// Verifies and loads the network in `tree`.
///
/// `state` is what the caller applied before (empty for a first load or for `odi validate`);
/// the returned [`Loaded::state`] is the state to persist if the caller applies this commit.
pub fn load_with(
    tree: &Tree,
    anchor: &TrustAnchor,
    state: &TrustState,
    now: OffsetDateTime,
    options: LoadOptions,
) -> Result<Loaded, Problems> {
    if let Some(path) = tree.ids().keys().find(|p| tree.get(p).is_none()) {
        // A tree from `git::read_since` leaves unchanged documents unread: only
        // `load_since`, which has the network they belong to, can take it.
        return Err(Problems(vec![Problem::file(path, "was not read (a partial tree)")]));
    }
    let root = trust::verify_root(tree, anchor, state, now).map_err(Problems)?;
    let mut problems = Vec::new();

    let verified =
        if options.skip_snapshot { Ok(None) } else { trust::verify_snapshot(tree, &root, now) };
    let snapshot = match verified {
        Ok(s) => s,
        Err(p) => {
            problems.extend(p);
            None
        }
    };

    // Signature files must sign something: `<file>.minisig` or `<file>.<key name>.minisig`.
    for (path, _) in tree.iter() {
        if let Some(signed) = path.strip_suffix(".minisig") {
            let by_name = signed.rsplit_once('.').map(|(f, _)| f).filter(|f| tree.get(f).is_some());
            if !path.starts_with(trust::ROOTS_DIR)
                && tree.get(signed).is_none()
                && by_name.is_none()
            {
                problems.push(Problem::file(
                    path,
                    format!("signature for {signed}, which does not exist"),
                ));
            }
        }
    }

    let mut docs_in = Vec::new();
    for (path, bytes) in tree.iter() {
        match classify(path) {
            Ok(Some(kind)) => docs_in.push((path, bytes, kind)),
            Ok(None) => {}
            Err(msg) => problems.push(Problem::file(path, msg)),
        }
    }

    // Signatures and parsing dominate the cost on big catalogs, and files are independent.
    let results: Vec<(String, Result<Checked, Problem>)> = docs_in
        .into_par_iter()
        .map(|(path, bytes, kind)| (path.to_owned(), check_doc(tree, &root, path, bytes, kind)))
        .collect();

    let mut next_state = TrustState { root: Some(root.pin()), serials: BTreeMap::new() };
    let mut docs = Vec::new();
    // (path, serial, SHA-256) of every signed document, for the snapshot comparison.
    let mut listed: Vec<(String, u64, [u8; 32])> = Vec::new();
    // Documents that failed their own checks: reported for that, not as missing.
    let mut failed = BTreeSet::new();
    for (path, r) in results {
        match r {
            Ok((kind, doc, sha)) => {
                if let Err(p) = state.check_serial(&path, doc.serial(), sha, &mut next_state) {
                    problems.push(p);
                }
                listed.push((path.clone(), doc.serial(), sha));
                docs.push((path, kind, doc));
            }
            Err(p) => {
                problems.push(p);
                failed.insert(path);
            }
        }
    }
    if let Some(snap) = &snapshot {
        problems.extend(check_snapshot_lists(tree, snap, state, &mut next_state, &mut listed));
        let refs = listed.iter().map(|(p, s, h)| (p.as_str(), *s, *h));
        let found = trust::check_against_snapshot(snap, refs);
        problems.extend(found.into_iter().filter(|p| !failed.contains(&p.file)));
    }
    keep_gone_marks(state, &mut next_state);

    let nodes = docs
        .iter()
        .filter(|(_, kind, _)| matches!(kind, Kind::Directory { .. } | Kind::Relay { .. }))
        .filter(|(path, _, _)| tree.ids().contains_key(path))
        .map(|(path, kind, doc)| (path.clone(), (kind.clone(), doc.clone())))
        .collect();
    let memo = Memo { ids: tree.ids().clone(), nodes };
    let mut network = build(root, None, docs, &mut problems);
    network.snapshot = snapshot;
    if problems.is_empty() {
        Ok(Loaded { network, state: next_state, memo })
    } else {
        problems.sort();
        problems.dedup();
        Err(Problems(problems))
    }
}

/// A document checked on its own: signature, then parse; with the SHA-256 of its bytes.
type Checked = (Kind, Doc, [u8; 32]);

fn check_doc(
    tree: &Tree,
    root: &Root,
    path: &str,
    bytes: &[u8],
    kind: Kind,
) -> Result<Checked, Problem> {
    use sha2::Digest as _;
    trust::verify_delegated(tree, root, path, bytes)?;
    let doc = match &kind {
        Kind::Catalog { .. } => Doc::Catalog(parse_listing(path, bytes)?),
        Kind::Release { .. } => Doc::Release(parse_listing(path, bytes)?),
        Kind::Directory { .. } => Doc::Directory(parse(path, bytes)?),
        Kind::Relay { .. } => Doc::Relay(parse(path, bytes)?),
    };
    Ok((kind, doc, sha2::Sha256::digest(bytes).into()))
}

/// The snapshot's own serial, and the roots added to `listed` (the snapshot lists them too).
fn check_snapshot_lists(
    tree: &Tree,
    snap: &trust::Snapshot,
    state: &TrustState,
    next_state: &mut TrustState,
    listed: &mut Vec<(String, u64, [u8; 32])>,
) -> Option<Problem> {
    use sha2::Digest as _;
    for (path, bytes) in tree.under(trust::ROOTS_DIR) {
        let serial = path.strip_prefix(trust::ROOTS_DIR).and_then(|n| n.strip_suffix(".toml"));
        if let Some(serial) = serial.and_then(|n| n.parse::<u64>().ok()) {
            listed.push((path.to_owned(), serial, sha2::Sha256::digest(bytes).into()));
        }
    }
    let bytes = tree.get(trust::SNAPSHOT_PATH)?;
    let sha = sha2::Sha256::digest(bytes).into();
    state.check_serial(trust::SNAPSHOT_PATH, snap.serial, sha, next_state).err()
}

/// Keeps the marks of documents that disappeared, so that re-adding an old signed copy fails.
fn keep_gone_marks(state: &TrustState, next_state: &mut TrustState) {
    for (path, mark) in &state.serials {
        next_state.serials.entry(path.clone()).or_insert(*mark);
    }
}

/// Applies a commit read with [`crate::git::read_since`] on top of `prior`, the network of
/// the commit `memo` and `state` come from, at a cost in proportion to what changed: catalog
/// documents that did not change (nor their signatures, nor the roots) are neither read nor
/// verified nor parsed again, and the catalogs they fill are shared with `prior`.
///
/// Gives exactly what [`load`] gives on the whole tree (a property test checks it), or `None`
/// where it cannot: any problem at all, a new or removed catalog, a tree not read from git.
/// The caller then loads the whole tree, which also names every problem.
pub fn load_since(
    delta: &Delta,
    prior: &Network,
    memo: &Memo,
    anchor: &TrustAnchor,
    state: &TrustState,
    now: OffsetDateTime,
) -> Option<Loaded> {
    let tree = &delta.tree;
    let ids = tree.ids();
    if ids.is_empty() || memo.ids.is_empty() {
        return None;
    }
    let root = trust::verify_root(tree, anchor, state, now).ok()?;
    let snapshot = trust::verify_snapshot(tree, &root, now).ok()?;
    let roots_same = crate::tree::same_under(ids, &memo.ids, trust::ROOTS_DIR);
    for path in ids.keys() {
        if let Some(signed) = path.strip_suffix(".minisig") {
            let by_name = signed.rsplit_once('.').is_some_and(|(f, _)| ids.contains_key(f));
            if !path.starts_with(trust::ROOTS_DIR) && !ids.contains_key(signed) && !by_name {
                return None;
            }
        }
    }

    // Each document: unchanged (its mark and, for nodes, its parsed form are reused) or to
    // check again from its bytes.
    let mut reused = Vec::new();
    let mut fresh = Vec::new();
    for path in ids.keys() {
        let kind = classify(path).ok()?;
        let Some(kind) = kind else { continue };
        let same = roots_same && crate::tree::unchanged(ids, &memo.ids, path);
        let node = matches!(kind, Kind::Directory { .. } | Kind::Relay { .. });
        match (tree.get(path), same) {
            (None, true) if !node => reused.push((path, None)),
            (Some(_), true) if node => reused.push((path, Some(memo.nodes.get(path)?.clone()))),
            (Some(bytes), _) => fresh.push((path, bytes, kind)),
            (None, _) => return None,
        }
    }
    let checked: Vec<(&String, Checked)> = fresh
        .into_par_iter()
        .map(|(path, bytes, kind)| Some((path, check_doc(tree, &root, path, bytes, kind).ok()?)))
        .collect::<Option<_>>()?;

    let mut next_state = TrustState { root: Some(root.pin()), serials: BTreeMap::new() };
    let mut listed = Vec::new();
    let mut nodes = BTreeMap::new();
    for (path, node) in reused {
        let mark = *state.serials.get(path)?;
        next_state.serials.insert(path.clone(), mark);
        listed.push((path.clone(), mark.serial, mark.sha256));
        if let Some(node) = node {
            nodes.insert(path.clone(), node);
        }
    }
    let mut changed: BTreeMap<String, Vec<(String, Doc)>> = BTreeMap::new();
    for (path, (kind, doc, sha)) in checked {
        state.check_serial(path, doc.serial(), sha, &mut next_state).ok()?;
        listed.push((path.clone(), doc.serial(), sha));
        match kind {
            Kind::Catalog { folder } | Kind::Release { folder } => {
                changed.entry(folder).or_default().push((path.clone(), doc));
            }
            kind => {
                nodes.insert(path.clone(), (kind, doc));
            }
        }
    }
    if let Some(snap) = &snapshot {
        if check_snapshot_lists(tree, snap, state, &mut next_state, &mut listed).is_some() {
            return None;
        }
        let refs = listed.iter().map(|(p, s, h)| (p.as_str(), *s, *h));
        if !trust::check_against_snapshot(snap, refs).is_empty() {
            return None;
        }
    }
    keep_gone_marks(state, &mut next_state);

    for (path, _) in delta.old.iter() {
        match classify(path) {
            Ok(Some(Kind::Catalog { folder } | Kind::Release { folder })) => {
                changed.entry(folder).or_default();
            }
            _ => return None,
        }
    }
    let mut catalogs: BTreeMap<String, Catalog> = prior
        .catalogs
        .iter()
        .filter(|(name, _)| !changed.contains_key(*name))
        .map(|(name, c)| (name.clone(), c.clone()))
        .collect();
    for (folder, docs) in changed {
        let catalog = patch_catalog(prior.catalogs.get(&folder)?, &folder, docs, &delta.old, ids)?;
        catalogs.insert(folder, catalog);
    }

    let mut problems = Vec::new();
    let node_docs: Vec<(String, Kind, Doc)> =
        nodes.iter().map(|(path, (kind, doc))| (path.clone(), kind.clone(), doc.clone())).collect();
    let mut network = build(root, Some(catalogs), node_docs, &mut problems);
    network.snapshot = snapshot;
    problems.is_empty().then(|| Loaded {
        network,
        state: next_state,
        memo: Memo { ids: ids.clone(), nodes },
    })
}

/// `before` with the artifacts of its changed documents taken out (as `old` has them) and
/// those of `docs` (the documents as they are now) put in; `None` at any problem.
fn patch_catalog(
    before: &Catalog,
    folder: &str,
    docs: Vec<(String, Doc)>,
    old: &Tree,
    ids: &BTreeMap<String, BlobId>,
) -> Option<Catalog> {
    let own = format!("catalogs/{folder}/catalog.toml");
    if !ids.contains_key(&own) {
        return None;
    }
    let mut catalog = before.clone();
    let prefix = format!("catalogs/{folder}/");
    for (path, bytes) in old.under(&prefix) {
        let entries = if path == own {
            parse_listing::<CatalogFile>(path, bytes).ok()?.artifacts
        } else {
            parse_listing::<ReleaseFile>(path, bytes).ok()?.artifacts
        };
        for a in entries {
            catalog.artifacts.remove(&a.path)?;
        }
    }
    let mut add = |entries: Vec<ArtifactEntry>| -> Option<()> {
        for a in entries {
            let reason_given = a.expunged.as_ref().is_none_or(|r| !r.trim().is_empty());
            if !reason_given || catalog.artifacts.contains_key(&a.path) {
                return None;
            }
            catalog.artifacts.insert(a.path.clone(), artifact(a));
        }
        Some(())
    };
    let mut meta = None;
    for (path, doc) in docs {
        match doc {
            Doc::Catalog(c) => {
                let mut problems = Vec::new();
                let origins = check_catalog(&path, folder, &c, &mut problems);
                if !problems.is_empty() {
                    return None;
                }
                add(c.artifacts)?;
                meta =
                    Some((c.description, c.tags, origins, c.replicas, c.import.map(|i| i.format)));
            }
            Doc::Release(r) if r.catalog == folder => add(r.artifacts)?,
            _ => return None,
        }
    }
    if let Some((description, tags, origins, replicas, format)) = meta {
        catalog.description = description;
        catalog.tags = tags;
        catalog.origins = origins;
        catalog.replicas = replicas;
        catalog.format = format;
    }
    Some(catalog)
}

fn artifact(a: ArtifactEntry) -> Artifact {
    Artifact {
        path: a.path,
        size: a.size,
        sha256: a.sha256,
        published: a.published.map(|t| t.0),
        expunged: a.expunged,
    }
}

/// The checks of a catalog's own file; gives its origins that are valid URLs.
fn check_catalog(
    path: &str,
    folder: &str,
    c: &CatalogFile,
    problems: &mut Vec<Problem>,
) -> Vec<Url> {
    if c.name != folder {
        problems.push(Problem::field(
            path,
            "name",
            format!("`{}` must equal the folder name `{folder}`", c.name),
        ));
    }
    if let Err(e) = check_name(&c.name) {
        problems.push(Problem::field(path, "name", format!("`{}` {e}", c.name)));
    }
    check_names(path, "tags", &c.tags, problems);
    if c.replicas == 0 || c.replicas > 64 {
        problems.push(Problem::field(path, "replicas", "must be between 1 and 64"));
    }
    if c.origins.is_empty() {
        problems.push(Problem::field(path, "origins", "at least one origin is needed"));
    }
    c.origins
        .iter()
        .enumerate()
        .filter_map(|(i, o)| check_url(path, &format!("origins[{i}]"), o, true, problems))
        .collect()
}

fn check_url(
    file: &str,
    field: &str,
    s: &str,
    allow_file: bool,
    problems: &mut Vec<Problem>,
) -> Option<Url> {
    match Url::parse(s) {
        Ok(u) if u.scheme() == "https" || u.scheme() == "http" => {
            if u.host_str().is_none_or(str::is_empty) {
                problems.push(Problem::field(file, field, format!("`{s}` has no host")));
                return None;
            }
            Some(u)
        }
        Ok(u) if allow_file && u.scheme() == "file" => Some(u),
        Ok(u) => {
            problems.push(Problem::field(
                file,
                field,
                format!(
                    "scheme `{}` is not allowed (use https://, http://{})",
                    u.scheme(),
                    if allow_file { " or file://" } else { "" }
                ),
            ));
            None
        }
        Err(e) => {
            problems.push(Problem::field(file, field, format!("`{s}` is not a URL: {e}")));
            None
        }
    }
}

fn check_names(file: &str, field: &str, names: &[String], problems: &mut Vec<Problem>) {
    let mut seen = BTreeSet::new();
    for (i, n) in names.iter().enumerate() {
        if let Err(e) = check_name(n) {
            problems.push(Problem::field(file, format!("{field}[{i}]"), format!("`{n}` {e}")));
        }
        if !seen.insert(n) {
            problems.push(Problem::field(
                file,
                format!("{field}[{i}]"),
                format!("`{n}` is listed twice"),
            ));
        }
    }
}

fn add_artifacts(
    file: &str,
    entries: Vec<ArtifactEntry>,
    into: &mut BTreeMap<crate::safe_path::ArtifactPath, (String, Artifact)>,
    problems: &mut Vec<Problem>,
) {
    for (i, a) in entries.into_iter().enumerate() {
        if let Some(reason) = &a.expunged {
            if reason.trim().is_empty() {
                problems.push(Problem::field(
                    file,
                    format!("artifacts[{i}].expunged"),
                    "give the reason for expunging",
                ));
            }
        }
        if let Some((other, _)) = into.get(&a.path) {
            problems.push(Problem::field(
                file,
                format!("artifacts[{i}].path"),
                format!("`{}` is already listed in {other}", a.path),
            ));
        } else {
            into.insert(a.path.clone(), (file.to_owned(), artifact(a)));
        }
    }
}

/// The network from its checked documents; with `given`, the catalogs are those (patched by
/// [`load_since`]) and `docs` holds only directory and relay files.
fn build(
    root: Root,
    given: Option<BTreeMap<String, Catalog>>,
    docs: Vec<(String, Kind, Doc)>,
    problems: &mut Vec<Problem>,
) -> Network {
    let mut catalogs = BTreeMap::new();
    let mut releases: BTreeMap<String, Vec<(String, ReleaseFile)>> = BTreeMap::new();
    let mut directories = BTreeMap::new();
    let mut relays = BTreeMap::new();
    let mut dir_files = BTreeMap::new();
    let mut relay_files = BTreeMap::new();

    for (path, kind, doc) in docs {
        match (kind, doc) {
            (Kind::Catalog { folder }, Doc::Catalog(c)) => {
                let origins = check_catalog(&path, &folder, &c, problems);
                catalogs.insert(
                    folder,
                    (
                        path,
                        c.description,
                        c.tags,
                        origins,
                        c.replicas,
                        c.import.map(|i| i.format),
                        c.artifacts,
                    ),
                );
            }
            (Kind::Release { folder }, Doc::Release(r)) => {
                if r.catalog != folder {
                    problems.push(Problem::field(
                        &path,
                        "catalog",
                        format!("`{}` must equal the folder name `{folder}`", r.catalog),
                    ));
                }
                releases.entry(folder).or_default().push((path, r));
            }
            (Kind::Directory { stem }, Doc::Directory(d)) => {
                if d.name != stem {
                    problems.push(Problem::field(
                        &path,
                        "name",
                        format!("`{}` must equal the file name `{stem}`", d.name),
                    ));
                }
                dir_files.insert(stem.clone(), path);
                directories.insert(stem, d);
            }
            (Kind::Relay { stem }, Doc::Relay(r)) => {
                if r.name != stem {
                    problems.push(Problem::field(
                        &path,
                        "name",
                        format!("`{}` must equal the file name `{stem}`", r.name),
                    ));
                }
                relay_files.insert(stem.clone(), path);
                relays.insert(stem, r);
            }
            _ => unreachable!("classify and parse agree on kinds"),
        }
    }

    for (folder, files) in &releases {
        if !catalogs.contains_key(folder) {
            for (path, _) in files {
                problems.push(Problem::file(path, format!("release file of catalog `{folder}`, which has no catalogs/{folder}/catalog.toml")));
            }
        }
    }

    let given_catalogs = given.is_some();
    let mut out_catalogs = given.unwrap_or_default();
    debug_assert!(!given_catalogs || (catalogs.is_empty() && releases.is_empty()));
    for (name, (path, description, tags, origins, replicas, format, artifacts)) in catalogs {
        let mut all = BTreeMap::new();
        add_artifacts(&path, artifacts, &mut all, problems);
        for (rpath, r) in releases.remove(&name).unwrap_or_default() {
            add_artifacts(&rpath, r.artifacts, &mut all, problems);
        }
        let artifacts = crate::model::dense_map(all.into_iter().map(|(k, (_, a))| (k, a)));
        out_catalogs.insert(
            name.clone(),
            Catalog { name, description, tags, origins, replicas, format, artifacts },
        );
    }

    let mut out_dirs = BTreeMap::new();
    for (name, d) in &directories {
        let file = &dir_files[name];
        if let Err(e) = check_name(name) {
            problems.push(Problem::field(file, "name", format!("`{name}` {e}")));
        }
        check_names(file, "catalogs", &d.catalogs, problems);
        check_names(file, "links", &d.links, problems);
        check_names(file, "references", &d.references, problems);
        if let Err(e) = check_name(&d.region) {
            problems.push(Problem::field(file, "region", format!("`{}` {e}", d.region)));
        }
        let url = check_url(file, "url", &d.url, false, problems);
        for (i, c) in d.catalogs.iter().enumerate() {
            if !out_catalogs.contains_key(c) {
                problems.push(Problem::field(
                    file,
                    format!("catalogs[{i}]"),
                    format!("no catalog named `{c}`"),
                ));
            }
        }
        for (field, list) in [("links", &d.links), ("references", &d.references)] {
            for (i, other) in list.iter().enumerate() {
                match directories.get(other) {
                    None => problems.push(Problem::field(file, format!("{field}[{i}]"), format!("no directory named `{other}`"))),
                    Some(_) if other == name => problems.push(Problem::field(file, format!("{field}[{i}]"), "a directory cannot name itself")),
                    Some(o) if field == "links" && o.kind == DirectoryKind::Meta => problems.push(Problem::field(
                        file,
                        format!("{field}[{i}]"),
                        format!("`{other}` is a meta-directory; links join directories that hold catalogs"),
                    )),
                    Some(o) if field == "links" && !o.catalogs.iter().any(|c| d.catalogs.contains(c)) => {
                        problems.push(Problem::field(file, format!("{field}[{i}]"), format!("`{other}` holds none of this directory's catalogs")))
                    }
                    Some(_) => {}
                }
            }
        }
        if d.kind == DirectoryKind::Meta {
            if !d.catalogs.is_empty() || !d.links.is_empty() {
                problems.push(Problem::field(
                    file,
                    "kind",
                    "a meta-directory holds only references (no catalogs or links)",
                ));
            }
            if d.references.is_empty() {
                problems.push(Problem::field(
                    file,
                    "references",
                    "a meta-directory needs at least one reference",
                ));
            }
        }
        if let Some(url) = url {
            out_dirs.insert(
                name.clone(),
                Directory {
                    name: name.clone(),
                    url,
                    region: d.region.clone(),
                    kind: d.kind,
                    catalogs: d.catalogs.clone(),
                    links: d.links.clone(),
                    references: d.references.clone(),
                },
            );
        }
    }
    check_reference_cycles(&directories, &dir_files, problems);

    let mut out_relays = BTreeMap::new();
    for (name, r) in relays {
        let file = &relay_files[&name];
        if let Err(e) = check_name(&name) {
            problems.push(Problem::field(file, "name", format!("`{name}` {e}")));
        }
        if let Err(e) = check_name(&r.region) {
            problems.push(Problem::field(file, "region", format!("`{}` {e}", r.region)));
        }
        check_names(file, "directories", &r.directories, problems);
        check_names(file, "catalogs", &r.catalogs, problems);
        check_names(file, "tags", &r.tags, problems);
        let url = check_url(file, "url", &r.url, false, problems);
        if r.quota.0 == 0 {
            problems.push(Problem::field(file, "quota", "must be more than 0"));
        }
        if r.directories.is_empty() {
            problems.push(Problem::field(
                file,
                "directories",
                "a relay works with at least one directory",
            ));
        }
        for (i, d) in r.directories.iter().enumerate() {
            match directories.get(d) {
                None => problems.push(Problem::field(
                    file,
                    format!("directories[{i}]"),
                    format!("no directory named `{d}`"),
                )),
                Some(dir) if dir.kind == DirectoryKind::Meta => problems.push(Problem::field(
                    file,
                    format!("directories[{i}]"),
                    format!("`{d}` is a meta-directory and holds no catalogs"),
                )),
                Some(_) => {}
            }
        }
        for (i, c) in r.catalogs.iter().enumerate() {
            if !out_catalogs.contains_key(c) {
                problems.push(Problem::field(
                    file,
                    format!("catalogs[{i}]"),
                    format!("no catalog named `{c}`"),
                ));
            }
        }
        if r.catalogs.is_empty() && r.tags.is_empty() {
            problems.push(Problem::field(
                file,
                "catalogs",
                "subscribe to at least one catalog or tag",
            ));
        }
        let code = |field: String, v: &str, problems: &mut Vec<Problem>| -> String {
            if v.len() != 2 || !v.bytes().all(|b| b.is_ascii_alphabetic()) {
                problems.push(Problem::field(
                    file,
                    field,
                    format!("`{v}` is not a two-letter code"),
                ));
            }
            v.to_ascii_uppercase()
        };
        let location = r.location.map(|l| {
            let country = l.country.map(|c| code("location.country".into(), &c, problems));
            let continent = l.continent.map(|c| code("location.continent".into(), &c, problems));
            if l.latitude.is_some_and(|v| !(-90.0..=90.0).contains(&v)) {
                problems.push(Problem::field(
                    file,
                    "location.latitude",
                    "must be between -90 and 90",
                ));
            }
            if l.longitude.is_some_and(|v| !(-180.0..=180.0).contains(&v)) {
                problems.push(Problem::field(
                    file,
                    "location.longitude",
                    "must be between -180 and 180",
                ));
            }
            if l.latitude.is_some() != l.longitude.is_some() {
                problems.push(Problem::field(
                    file,
                    "location",
                    "give both latitude and longitude, or neither",
                ));
            }
            crate::raw::RelayLocation { country, continent, ..l }
        });
        let countries: Vec<String> = r
            .countries
            .iter()
            .enumerate()
            .map(|(i, c)| code(format!("countries[{i}]"), c, problems))
            .collect();
        let exclude_countries: Vec<String> = r
            .exclude_countries
            .iter()
            .enumerate()
            .map(|(i, c)| code(format!("exclude_countries[{i}]"), c, problems))
            .collect();
        if let Some(url) = url {
            out_relays.insert(
                name.clone(),
                Relay {
                    name,
                    url,
                    region: r.region,
                    contact: r.contact,
                    quota: r.quota,
                    bandwidth: r.bandwidth,
                    directories: r.directories,
                    catalogs: r.catalogs,
                    tags: r.tags,
                    location,
                    countries,
                    exclude_countries,
                },
            );
        }
    }

    Network {
        root,
        catalogs: out_catalogs,
        directories: out_dirs,
        relays: out_relays,
        snapshot: None,
    }
}

/// References form a graph; a cycle could bounce a client between directories forever.
fn check_reference_cycles(
    dirs: &BTreeMap<String, DirectoryFile>,
    files: &BTreeMap<String, String>,
    problems: &mut Vec<Problem>,
) {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit(
        n: &str,
        dirs: &BTreeMap<String, DirectoryFile>,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(n).copied().unwrap_or(Mark::New) {
            Mark::Done => return None,
            Mark::Active => {
                let start = stack.iter().position(|s| s == n).unwrap_or(0);
                let mut cycle = stack[start..].to_vec();
                cycle.push(n.to_owned());
                return Some(cycle);
            }
            Mark::New => {}
        }
        marks.insert(n.to_owned(), Mark::Active);
        stack.push(n.to_owned());
        for r in dirs.get(n).map(|d| d.references.as_slice()).unwrap_or_default() {
            if dirs.contains_key(r) {
                if let Some(c) = visit(r, dirs, marks, stack) {
                    return Some(c);
                }
            }
        }
        stack.pop();
        marks.insert(n.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for name in dirs.keys() {
        if let Some(cycle) = visit(name, dirs, &mut marks, &mut Vec::new()) {
            let file = files.get(&cycle[0]).cloned().unwrap_or_default();
            problems.push(Problem::field(
                file,
                "references",
                format!("reference cycle: {}", cycle.join(" -> ")),
            ));
            return;
        }
    }
}

mod listing;
#[cfg(test)]
mod since_tests;
