//! The trust policy, modelled on The Update Framework: a versioned root of keys with a
//! threshold, rotation signed by old and new keys, delegations of paths to keys, and
//! high-water marks of serials so that an old signed file cannot be replayed.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use time::OffsetDateTime;

use crate::problem::{self, Problem};
use crate::raw::RootFile;
use crate::signature::{PublicKey, SignatureError};
use crate::tree::Tree;

/// Folder of root versions: `trust/roots/<serial>.toml`.
pub const ROOTS_DIR: &str = "trust/roots/";

/// A verified root.
#[derive(Debug, Clone)]
pub struct Root {
    /// Version: the N of `trust/roots/<N>.toml`; versions in a commit are consecutive.
    pub serial: u64,
    /// From this instant on, a commit whose newest root this is fails to load.
    pub expires: OffsetDateTime,
    /// Distinct key signatures needed.
    pub threshold: usize,
    /// Root keys by name.
    pub keys: Vec<(String, PublicKey)>,
    /// Who may sign which network files; a file no delegation covers is refused.
    pub delegations: Vec<DelegationRule>,
    /// The snapshot role, when the network has one: then every commit must carry a fresh
    /// snapshot that matches its tree.
    pub snapshot: Option<RoleRule>,
}

/// One delegation: keys, how many of them must sign, and the paths they may sign.
#[derive(Debug, Clone)]
pub struct DelegationRule {
    /// The delegation's name, for messages.
    pub name: String,
    /// Its keys by name; a single-key delegation has one, named after the delegation.
    pub keys: Vec<(String, PublicKey)>,
    /// Distinct keys that must sign a file (1 to `keys.len()`).
    pub threshold: usize,
    /// Folder prefixes (ending in `/`) or exact file paths.
    pub paths: Vec<String>,
}

/// Keys of a role (the snapshot role) and their threshold.
#[derive(Debug, Clone)]
pub struct RoleRule {
    /// Keys by name; each signs into `<file>.<name>.minisig`.
    pub keys: Vec<(String, PublicKey)>,
    /// Distinct keys that must sign.
    pub threshold: usize,
}

/// Where the snapshot lives.
pub const SNAPSHOT_PATH: &str = "trust/snapshot.toml";

impl DelegationRule {
    /// Whether this delegation covers `path`.
    pub fn covers(&self, path: &str) -> bool {
        self.paths.iter().any(|p| {
            if p.ends_with('/') {
                path.starts_with(p.as_str())
            } else {
                path == p
            }
        })
    }
}

impl Root {
    /// Delegations whose keys may sign `path`.
    pub fn signers_for<'a>(
        &'a self,
        path: &'a str,
    ) -> impl Iterator<Item = &'a DelegationRule> + 'a {
        self.delegations.iter().filter(move |d| d.covers(path))
    }

    /// What the agent persists about this root to verify the next rotation.
    pub fn pin(&self) -> RootPin {
        RootPin {
            serial: self.serial,
            threshold: self.threshold,
            keys: self.keys.iter().map(|(_, k)| k.base64().to_owned()).collect(),
        }
    }
}

/// The trust an agent starts from: root public keys given in its configuration.
#[derive(Debug, Clone, Default)]
pub struct TrustAnchor {
    /// Pinned root keys. Empty means trust on first use of the lowest root version, which is
    /// what `odi validate` does for a repository checked on its own.
    pub pinned: Vec<PublicKey>,
}

/// The last root an agent trusted, persisted so the next root must chain from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootPin {
    /// The trusted root's serial; a commit whose newest root is lower is a rollback.
    pub serial: u64,
    /// How many of `keys` must sign the next root, and this one again in later commits.
    pub threshold: usize,
    /// Its keys (base64).
    pub keys: Vec<String>,
}

/// Everything an agent remembers between commits to refuse replay and rollback.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustState {
    /// The last root trusted.
    pub root: Option<RootPin>,
    /// Highest serial seen per document path, with the SHA-256 of that document.
    pub serials: BTreeMap<String, SerialMark>,
}

/// A document's high-water mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SerialMark {
    /// Highest serial applied.
    pub serial: u64,
    /// SHA-256 of the document at that serial (hex), so the same serial cannot change content.
    #[serde(with = "hex_32")]
    pub sha256: [u8; 32],
}

mod hex_32 {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(String::deserialize(d)?, &mut out)
            .map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

impl TrustState {
    /// Checks a document's serial against the high-water mark and records it in `next`.
    /// `sha` is the SHA-256 of the document's bytes.
    pub fn check_serial(
        &self,
        path: &str,
        serial: u64,
        sha: [u8; 32],
        next: &mut TrustState,
    ) -> Result<(), Problem> {
        if let Some(mark) = self.serials.get(path) {
            if serial < mark.serial {
                return Err(Problem::field(
                    path,
                    "serial",
                    format!(
                        "serial {serial} is lower than {} already applied (replay of an old file?)",
                        mark.serial
                    ),
                ));
            }
            if serial == mark.serial && sha != mark.sha256 {
                return Err(Problem::field(
                    path,
                    "serial",
                    format!("content changed but serial stayed at {serial}; raise it"),
                ));
            }
        }
        next.serials.insert(path.to_owned(), SerialMark { serial, sha256: sha });
        Ok(())
    }
}

fn root_path(serial: u64) -> String {
    format!("{ROOTS_DIR}{serial}.toml")
}

/// Signature files of a root: `trust/roots/<serial>.toml.<key-name>.minisig`.
fn root_signatures<'a>(
    tree: &'a Tree,
    serial: u64,
) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
    let prefix = format!("{}.", root_path(serial));
    tree.under(ROOTS_DIR).filter_map(move |(p, bytes)| {
        let rest = p.strip_prefix(prefix.as_str())?;
        rest.strip_suffix(".minisig")?;
        Some((p, std::str::from_utf8(bytes).unwrap_or("")))
    })
}

/// How many distinct keys of `keys` signed root `serial`.
fn count_signers(tree: &Tree, serial: u64, data: &[u8], keys: &[PublicKey]) -> usize {
    let mut signed = BTreeSet::new();
    for (_, sig) in root_signatures(tree, serial) {
        for (i, k) in keys.iter().enumerate() {
            if k.verify(data, sig).is_ok() {
                signed.insert(i);
            }
        }
    }
    signed.len()
}

fn parse_root(path: &str, bytes: &[u8]) -> Result<Root, Vec<Problem>> {
    let text = std::str::from_utf8(bytes).map_err(|_| vec![Problem::file(path, "is not UTF-8")])?;
    let raw: RootFile =
        toml::from_str(text).map_err(|e| vec![problem::from_toml(path, text, &e)])?;
    let mut problems = Vec::new();
    let parse_key =
        |field: String, b64: &str, problems: &mut Vec<Problem>| match PublicKey::parse(b64) {
            Ok(k) => Some(k),
            Err(e) => {
                problems.push(Problem::field(path, field, e.to_string()));
                None
            }
        };
    let mut keys = Vec::new();
    let mut names = BTreeSet::new();
    for (i, k) in raw.keys.iter().enumerate() {
        if !names.insert(k.name.clone()) {
            problems.push(Problem::field(
                path,
                format!("keys[{i}].name"),
                format!("duplicate key name `{}`", k.name),
            ));
        }
        if let Some(key) = parse_key(format!("keys[{i}].public"), &k.public, &mut problems) {
            if keys.iter().any(|(_, other)| *other == key) {
                problems.push(Problem::field(
                    path,
                    format!("keys[{i}].public"),
                    "the same key is listed twice",
                ));
            }
            keys.push((k.name.clone(), key));
        }
    }
    if raw.threshold == 0 || raw.threshold as usize > raw.keys.len() {
        problems.push(Problem::field(
            path,
            "threshold",
            format!(
                "threshold {} must be between 1 and the number of keys ({})",
                raw.threshold,
                raw.keys.len()
            ),
        ));
    }
    let mut delegations = Vec::new();
    for (i, d) in raw.delegations.iter().enumerate() {
        for (j, p) in d.paths.iter().enumerate() {
            let field = format!("delegations[{i}].paths[{j}]");
            let ok_shape = crate::safe_path::ArtifactPath::new(p.trim_end_matches('/')).is_ok();
            let top = p.split('/').next().unwrap_or("");
            if !ok_shape || !["catalogs", "directories", "relays"].contains(&top) {
                problems.push(Problem::field(path, field, format!("`{p}` must be a folder (ending in `/`) or file under catalogs/, directories/ or relays/")));
            }
        }
        let mut keys = Vec::new();
        match (&d.public, d.keys.is_empty()) {
            (Some(public), true) => {
                if let Some(k) =
                    parse_key(format!("delegations[{i}].public"), public, &mut problems)
                {
                    keys.push((d.name.clone(), k));
                }
            }
            (None, false) => {
                let role = role_keys(path, &format!("delegations[{i}]"), &d.keys, &mut problems);
                keys.extend(role);
            }
            _ => problems.push(Problem::field(
                path,
                format!("delegations[{i}]"),
                "give either `public` (one key) or `keys` (several, with `threshold`)",
            )),
        }
        let threshold = d.threshold.unwrap_or(1) as usize;
        if !keys.is_empty() && (threshold == 0 || threshold > keys.len()) {
            problems.push(Problem::field(
                path,
                format!("delegations[{i}].threshold"),
                format!(
                    "threshold {threshold} must be between 1 and the number of keys ({})",
                    keys.len()
                ),
            ));
        }
        delegations.push(DelegationRule {
            name: d.name.clone(),
            keys,
            threshold,
            paths: d.paths.clone(),
        });
    }
    let snapshot = raw.snapshot.as_ref().map(|r| {
        let keys = role_keys(path, "snapshot", &r.keys, &mut problems);
        let threshold = r.threshold as usize;
        if threshold == 0 || threshold > keys.len().max(1) || keys.is_empty() {
            problems.push(Problem::field(
                path,
                "snapshot.threshold",
                format!(
                    "threshold {threshold} must be between 1 and the number of keys ({})",
                    keys.len()
                ),
            ));
        }
        RoleRule { keys, threshold }
    });
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Root {
        serial: raw.serial,
        expires: raw.expires.0,
        threshold: raw.threshold as usize,
        keys,
        delegations,
        snapshot,
    })
}

/// The keys of a role or a several-key delegation, named and distinct.
fn role_keys(
    path: &str,
    field: &str,
    keys: &[crate::raw::RootKey],
    problems: &mut Vec<Problem>,
) -> Vec<(String, PublicKey)> {
    let mut out: Vec<(String, PublicKey)> = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let name_ok = !k.name.is_empty()
            && k.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok {
            problems.push(Problem::field(
                path,
                format!("{field}.keys[{i}].name"),
                format!(
                    "`{}` must be letters, digits, `-` or `_` (it names a signature file)",
                    k.name
                ),
            ));
        }
        match PublicKey::parse(&k.public) {
            Ok(key) => {
                if out.iter().any(|(n, other)| *other == key || *n == k.name) {
                    problems.push(Problem::field(
                        path,
                        format!("{field}.keys[{i}]"),
                        "the same key or name is listed twice",
                    ));
                }
                out.push((k.name.clone(), key));
            }
            Err(e) => problems.push(Problem::field(
                path,
                format!("{field}.keys[{i}].public"),
                e.to_string(),
            )),
        }
    }
    out
}

/// The signature files that may sign `path`: `<path>.minisig` and `<path>.<name>.minisig` for
/// each key name given, those present in the tree.
fn signature_files<'t>(tree: &'t Tree, path: &str, names: &[&str]) -> Vec<(String, &'t str)> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let candidates = std::iter::once(format!("{path}.minisig"))
        .chain(names.iter().map(|n| format!("{path}.{n}.minisig")));
    for sig_path in candidates {
        if !seen.insert(sig_path.clone()) {
            continue;
        }
        if let Some(bytes) = tree.get(&sig_path) {
            out.push((sig_path, std::str::from_utf8(bytes).unwrap_or("")));
        }
    }
    out
}

/// Which of `keys` signed `data` in any of `sigs`, by key name; and the first error that was
/// not merely "another key" (a legacy or malformed signature), to report.
fn signed_by(
    data: &[u8],
    sigs: &[(String, &str)],
    keys: &[(String, PublicKey)],
) -> (BTreeSet<String>, Option<String>) {
    let mut names = BTreeSet::new();
    let mut error = None;
    for (sig_path, sig) in sigs {
        for (name, k) in keys {
            match k.verify(data, sig) {
                Ok(()) => {
                    names.insert(name.clone());
                }
                Err(SignatureError::UnexpectedKey(_)) => {}
                Err(e) => {
                    error.get_or_insert_with(|| format!("{sig_path}: {e}"));
                }
            }
        }
    }
    (names, error)
}

/// Finds and verifies the current root: the chain of versions from what the agent already
/// trusts (its last root, or its pinned keys) to the newest, each rotation signed by a
/// threshold of the previous keys and of its own.
pub fn verify_root(
    tree: &Tree,
    anchor: &TrustAnchor,
    state: &TrustState,
    now: OffsetDateTime,
) -> Result<Root, Vec<Problem>> {
    let mut versions: Vec<u64> = tree
        .under(ROOTS_DIR)
        .filter_map(|(p, _)| p.strip_prefix(ROOTS_DIR)?.strip_suffix(".toml")?.parse().ok())
        .collect();
    versions.sort_unstable();
    let Some(&newest) = versions.last() else {
        return Err(vec![Problem::file(ROOTS_DIR, "no root found (expected trust/roots/1.toml)")]);
    };
    for w in versions.windows(2) {
        if w[1] != w[0] + 1 {
            return Err(vec![Problem::file(
                root_path(w[0] + 1),
                "missing: root versions must be consecutive",
            )]);
        }
    }
    let load = |serial: u64| -> Result<(Root, &[u8]), Vec<Problem>> {
        let path = root_path(serial);
        let bytes = tree.get(&path).ok_or_else(|| vec![Problem::file(&path, "missing")])?;
        let root = parse_root(&path, bytes)?;
        if root.serial != serial {
            return Err(vec![Problem::field(
                &path,
                "serial",
                format!("serial {} does not match the file name", root.serial),
            )]);
        }
        Ok((root, bytes))
    };
    let self_signed = |root: &Root, bytes: &[u8]| -> Result<(), Problem> {
        let own: Vec<PublicKey> = root.keys.iter().map(|(_, k)| k.clone()).collect();
        let n = count_signers(tree, root.serial, bytes, &own);
        if n < root.threshold {
            return Err(Problem::file(
                root_path(root.serial),
                format!("signed by {n} of its own keys, threshold is {}", root.threshold),
            ));
        }
        Ok(())
    };

    // Where the chain starts, and the keys and threshold the first step must satisfy.
    let (mut prev_keys, mut prev_threshold, start): (Vec<PublicKey>, usize, u64) =
        if let Some(pin) = &state.root {
            if newest < pin.serial {
                return Err(vec![Problem::file(
                    root_path(newest),
                    format!(
                        "root serial {newest} is lower than {} already trusted (rollback)",
                        pin.serial
                    ),
                )]);
            }
            let keys = pin.keys.iter().filter_map(|k| PublicKey::parse(k).ok()).collect();
            // Start at the trusted version itself: its file in this commit must still carry a
            // threshold of the pinned keys' signatures, or a commit could rewrite it (new
            // delegations, say) without raising its serial.
            (keys, pin.threshold, pin.serial)
        } else if anchor.pinned.is_empty() {
            let first = versions[0];
            let (root, bytes) = load(first)?;
            self_signed(&root, bytes).map_err(|p| vec![p])?;
            (root.keys.iter().map(|(_, k)| k.clone()).collect(), root.threshold, first + 1)
        } else {
            // The earliest version that a threshold of the pinned keys signed.
            let mut found = None;
            for &v in &versions {
                let (root, bytes) = load(v)?;
                let n = count_signers(tree, v, bytes, &anchor.pinned);
                if n >= root.threshold && n > 0 {
                    self_signed(&root, bytes).map_err(|p| vec![p])?;
                    found = Some(root);
                    break;
                }
            }
            let Some(root) = found else {
                return Err(vec![Problem::file(
                    ROOTS_DIR,
                    "no root version is signed by a threshold of the pinned root keys",
                )]);
            };
            (root.keys.iter().map(|(_, k)| k.clone()).collect(), root.threshold, root.serial + 1)
        };

    let mut current = None;
    for v in start..=newest {
        let (root, bytes) = load(v)?;
        let by_old = count_signers(tree, v, bytes, &prev_keys);
        if by_old < prev_threshold {
            return Err(vec![Problem::file(root_path(v), format!("rotation signed by {by_old} of the previous root's keys, threshold is {prev_threshold}"))]);
        }
        self_signed(&root, bytes).map_err(|p| vec![p])?;
        prev_keys = root.keys.iter().map(|(_, k)| k.clone()).collect();
        prev_threshold = root.threshold;
        current = Some(root);
    }
    let root = match current {
        Some(r) => r,
        // Nothing newer than what is already trusted (or than the anchor's version).
        None => load(start - 1)?.0,
    };
    if root.expires <= now {
        return Err(vec![Problem::field(
            root_path(root.serial),
            "expires",
            format!("root expired at {}", root.expires),
        )]);
    }
    Ok(root)
}

/// Checks the signatures beside a delegated file: some delegation covering `path` must be
/// satisfied by a threshold of its keys. The error lists, for each covering delegation, who
/// signed and whose signatures are still missing.
pub fn verify_delegated(tree: &Tree, root: &Root, path: &str, data: &[u8]) -> Result<(), Problem> {
    let covering: Vec<&DelegationRule> = root.signers_for(path).collect();
    if covering.is_empty() {
        return Err(Problem::file(path, "no delegation in the root covers this path"));
    }
    let names: Vec<&str> =
        covering.iter().flat_map(|d| d.keys.iter().map(|(n, _)| n.as_str())).collect();
    let sigs = signature_files(tree, path, &names);
    if sigs.is_empty() {
        return Err(Problem::file(path, format!("missing signature {path}.minisig")));
    }
    let mut reports = Vec::new();
    let allowed: BTreeSet<&str> =
        covering.iter().flat_map(|d| d.keys.iter().map(|(_, k)| k.id())).collect();
    let foreign: BTreeSet<String> = sigs
        .iter()
        .filter_map(|(_, sig)| crate::signature::signature_key_id(sig))
        .filter(|id| !allowed.contains(id.as_str()))
        .collect();
    for id in &foreign {
        reports.push(format!("signed by key {id}, which is not allowed to sign this file"));
    }
    for d in &covering {
        let (signed, error) = signed_by(data, &sigs, &d.keys);
        if signed.len() >= d.threshold {
            return Ok(());
        }
        if let Some(e) = error {
            if d.keys.len() == 1 {
                return Err(Problem::file(
                    path,
                    format!("{e} (checked with the key of delegation `{}`)", d.name),
                ));
            }
            reports.push(e);
        }
        let what = format!("delegation `{}`", d.name);
        reports.push(missing_report(&what, d.threshold, &d.keys, &signed, path));
    }
    Err(Problem::file(path, reports.join("; ")))
}

/// "signed by 1 of 3 keys of delegation `x` (threshold 2); still missing: ..." for messages.
fn missing_report(
    what: &str,
    threshold: usize,
    keys: &[(String, PublicKey)],
    signed: &BTreeSet<String>,
    path: &str,
) -> String {
    let missing: Vec<String> = keys
        .iter()
        .filter(|(n, _)| !signed.contains(n))
        .map(|(n, k)| format!("{n} (key {}, into {path}.{n}.minisig)", k.id()))
        .collect();
    if keys.len() == 1 {
        return format!("no signature by the key of {what} (key {})", keys[0].1.id());
    }
    format!(
        "signed by {} of {} keys of {what} (threshold {threshold}); signatures still possible from: {}",
        signed.len(),
        keys.len(),
        missing.join(", ")
    )
}

/// A verified snapshot.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Its serial; never goes down for an agent.
    pub serial: u64,
    /// When it stops being fresh.
    pub expires: OffsetDateTime,
    /// Listed documents by path: (serial, SHA-256).
    pub documents: BTreeMap<String, (u64, [u8; 32])>,
}

/// Verifies `trust/snapshot.toml` when the root has a snapshot role: signed by a threshold of
/// the role's keys, not expired at `now`. `Ok(None)` when the root has no snapshot role.
pub fn verify_snapshot(
    tree: &Tree,
    root: &Root,
    now: OffsetDateTime,
) -> Result<Option<Snapshot>, Vec<Problem>> {
    let Some(role) = &root.snapshot else { return Ok(None) };
    let path = SNAPSHOT_PATH;
    let Some(bytes) = tree.get(path) else {
        return Err(vec![Problem::file(path, "missing: the root names a snapshot role, so every commit needs a snapshot (odi snapshot)")]);
    };
    let names: Vec<&str> = role.keys.iter().map(|(n, _)| n.as_str()).collect();
    let sigs = signature_files(tree, path, &names);
    let (signed, error) = signed_by(bytes, &sigs, &role.keys);
    if signed.len() < role.threshold {
        let mut msg =
            missing_report("the snapshot role", role.threshold, &role.keys, &signed, path);
        if sigs.is_empty() {
            msg = format!("no signature; {msg}");
        }
        if let Some(e) = error {
            msg = format!("{e}; {msg}");
        }
        return Err(vec![Problem::file(path, msg)]);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| vec![Problem::file(path, "is not UTF-8")])?;
    let raw: crate::raw::SnapshotFile =
        toml::from_str(text).map_err(|e| vec![problem::from_toml(path, text, &e)])?;
    if raw.expires.0 <= now {
        return Err(vec![Problem::field(path, "expires", format!("snapshot expired at {} (the repository stopped being refreshed: a frozen or stale copy?)", raw.expires.0))]);
    }
    let mut documents = BTreeMap::new();
    let mut problems = Vec::new();
    for (i, d) in raw.documents.iter().enumerate() {
        if documents.insert(d.path.clone(), (d.serial, d.sha256.0)).is_some() {
            problems.push(Problem::field(
                path,
                format!("documents[{i}].path"),
                format!("`{}` is listed twice", d.path),
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Some(Snapshot { serial: raw.serial, expires: raw.expires.0, documents }))
}

/// The snapshot entries of `tree`: every document [`is_snapshot_document`] names, sorted by
/// path, with its serial and SHA-256. What `odi snapshot` writes and builders sign.
pub fn list_documents(tree: &Tree) -> Result<Vec<crate::raw::SnapshotEntry>, Problem> {
    #[derive(serde::Deserialize)]
    struct Serial {
        serial: u64,
    }
    let mut out = Vec::new();
    for (path, bytes) in tree.iter() {
        if !is_snapshot_document(path) {
            continue;
        }
        let text = std::str::from_utf8(bytes).map_err(|_| Problem::file(path, "is not UTF-8"))?;
        // Only the serial is read here: the document's own checks are `load`'s business.
        let value: toml::Table =
            toml::from_str(text).map_err(|e| problem::from_toml(path, text, &e))?;
        let serial = toml::Value::Table(value)
            .try_into::<Serial>()
            .map_err(|_| Problem::field(path, "serial", "missing or not a number"))?
            .serial;
        let sha256 = crate::raw::Sha256(sha2::Sha256::digest(bytes).into());
        out.push(crate::raw::SnapshotEntry { path: path.to_owned(), serial, sha256 });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Whether a path is a document the snapshot lists: every `.toml` under `catalogs/`,
/// `directories/`, `relays/` and `trust/roots/`.
pub fn is_snapshot_document(path: &str) -> bool {
    path.ends_with(".toml")
        && (path.starts_with("catalogs/")
            || path.starts_with("directories/")
            || path.starts_with("relays/")
            || path.starts_with(ROOTS_DIR))
}

/// Compares the tree's documents (path, serial, SHA-256 of the bytes) with the snapshot:
/// every difference is a problem naming the path.
pub fn check_against_snapshot<'a>(
    snapshot: &Snapshot,
    docs: impl IntoIterator<Item = (&'a str, u64, [u8; 32])>,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for (path, serial, sha) in docs {
        seen.insert(path.to_owned());
        match snapshot.documents.get(path) {
            None => problems.push(Problem::file(
                path,
                format!("not listed in {SNAPSHOT_PATH} (added without the snapshot role?)"),
            )),
            Some((s, _)) if *s != serial => problems.push(Problem::field(
                path,
                "serial",
                format!("serial {serial}, but {SNAPSHOT_PATH} lists {s}"),
            )),
            Some((_, h)) if *h != sha => problems.push(Problem::file(
                path,
                format!(
                    "content differs from {SNAPSHOT_PATH} (SHA-256 {}, listed {})",
                    hex::encode(sha),
                    hex::encode(h)
                ),
            )),
            Some(_) => {}
        }
    }
    for path in snapshot.documents.keys() {
        if !seen.contains(path) {
            problems.push(Problem::file(path, format!("missing: listed in {SNAPSHOT_PATH} but not in the tree (deleted without the snapshot role?)")));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use crate::builder::NetworkBuilder;
    use crate::{load, TrustAnchor, TrustState};

    #[test]
    fn an_applied_root_cannot_be_rewritten_without_its_keys() {
        let b = NetworkBuilder::new().unwrap();
        let now = time::OffsetDateTime::now_utc();
        let tree = b.tree().unwrap();
        let state =
            load(&tree, &TrustAnchor::default(), &TrustState::default(), now).unwrap().state;
        // Same serial, an extra delegation for an attacker's key, the old signatures kept.
        let mut evil = tree.clone();
        let root = String::from_utf8(tree.get("trust/roots/1.toml").unwrap().to_vec()).unwrap();
        let attacker = crate::builder::Key::generate("attacker").unwrap();
        let root = format!("{root}\n[[delegations]]\nname = \"attacker\"\npublic = \"{}\"\npaths = [\"relays/\"]\n", attacker.public());
        evil.insert("trust/roots/1.toml", root.into_bytes());
        let problems = load(&evil, &TrustAnchor::default(), &state, now).unwrap_err();
        assert!(problems.to_string().contains("trust/roots/1.toml"), "{problems}");
        // The untouched tree still loads with the same state.
        load(&tree, &TrustAnchor::default(), &state, now).unwrap();
    }
}
