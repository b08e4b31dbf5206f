//! Trust upkeep: `odi snapshot` (list and sign every document of the tree for the snapshot
//! role, what the network's CI runs after each merge and on a schedule), `odi root new`
//! (draft the next root version) and `odi root sign` (add one holder's signature to it).
//!
//! Every command works on a work tree, writes deterministic TOML, and names the signature file
//! after the key's name in the root, so signatures made with `minisign -S -x <that file>`
//! count the same.

use std::path::{Path, PathBuf};

use odi_network::raw::{RootFile, SnapshotFile, Timestamp};
use odi_network::signature::{PublicKey, SecretKey};
use odi_network::trust::{list_documents, ROOTS_DIR, SNAPSHOT_PATH};
use odi_network::Tree;
use time::OffsetDateTime;

use super::{io_err, CmdError};

/// What `odi snapshot` wrote.
#[derive(Debug)]
pub struct SnapshotReport {
    /// The new serial.
    pub serial: u64,
    /// Documents listed.
    pub documents: usize,
    /// When it expires.
    pub expires: OffsetDateTime,
    /// The signature file written.
    pub signature: PathBuf,
}

fn load_key(path: &Path) -> Result<(SecretKey, PublicKey), CmdError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    let key = SecretKey::parse(&text, std::env::var("ODI_KEY_PASSWORD").ok())?;
    let public = key.public()?;
    Ok((key, public))
}

fn sign_into(key: &SecretKey, data: &[u8], file: &str, out: &Path) -> Result<(), CmdError> {
    let ts = OffsetDateTime::now_utc().unix_timestamp();
    let sig = key.sign(data, &format!("timestamp:{ts}\tfile:{file}"))?;
    std::fs::write(out, sig).map_err(io_err(out))
}

/// The newest root version in the tree: (serial, parsed file, bytes).
fn newest_root(tree: &Tree) -> Result<(u64, RootFile, Vec<u8>), CmdError> {
    let newest = tree
        .under(ROOTS_DIR)
        .filter_map(|(p, _)| p.strip_prefix(ROOTS_DIR)?.strip_suffix(".toml")?.parse::<u64>().ok())
        .max()
        .ok_or_else(|| CmdError::Usage(format!("no root in {ROOTS_DIR}")))?;
    let path = format!("{ROOTS_DIR}{newest}.toml");
    let bytes = tree.get(&path).unwrap_or_default().to_vec();
    let text = String::from_utf8(bytes.clone())
        .map_err(|_| CmdError::Usage(format!("{path} is not UTF-8")))?;
    let root: RootFile =
        toml::from_str(&text).map_err(|e| CmdError::Usage(format!("{path}: {e}")))?;
    Ok((newest, root, bytes))
}

/// `odi snapshot`: lists every signed document of the work tree at `repo`, raises the
/// snapshot's serial, sets its expiry `valid_for` from now, and signs it with `key`, which must
/// be one of the snapshot role's keys in the newest root. With `sign_only`, adds `key`'s
/// signature to the snapshot as it is (a second holder of a k-of-n role).
pub fn snapshot(
    repo: &Path,
    key_path: &Path,
    valid_for: time::Duration,
    sign_only: bool,
    remove: &[String],
) -> Result<SnapshotReport, CmdError> {
    let tree = super::source::read(repo, None)?;
    let (serial, root, _) = newest_root(&tree)?;
    let role = root.snapshot.as_ref().ok_or_else(|| {
        CmdError::Usage(format!("root {serial} has no snapshot role: add [snapshot] with keys and a threshold (odi root new)"))
    })?;
    let (key, public) = load_key(key_path)?;
    let name = role
        .keys
        .iter()
        .find(|k| PublicKey::parse(&k.public).is_ok_and(|p| p == public))
        .map(|k| k.name.clone())
        .ok_or_else(|| {
            CmdError::Usage(format!(
                "key {} is not one of the snapshot role's keys in root {serial}",
                public.id()
            ))
        })?;
    let snapshot_file = repo.join(SNAPSHOT_PATH);
    let sig_path = repo.join(format!("{SNAPSHOT_PATH}.{name}.minisig"));
    if sign_only {
        let data = std::fs::read(&snapshot_file).map_err(io_err(&snapshot_file))?;
        let raw: SnapshotFile = toml::from_str(&String::from_utf8_lossy(&data))
            .map_err(|e| CmdError::Usage(format!("{SNAPSHOT_PATH}: {e}")))?;
        sign_into(&key, &data, "snapshot.toml", &sig_path)?;
        return Ok(SnapshotReport {
            serial: raw.serial,
            documents: raw.documents.len(),
            expires: raw.expires.0,
            signature: sig_path,
        });
    }
    let documents = list_documents(&tree).map_err(|p| CmdError::Usage(p.to_string()))?;
    let old: Option<SnapshotFile> = match tree.get(SNAPSHOT_PATH) {
        Some(b) => Some(
            toml::from_str(&String::from_utf8_lossy(b))
                .map_err(|e| CmdError::Usage(format!("{SNAPSHOT_PATH}: {e}")))?,
        ),
        None => None,
    };
    // A document the last snapshot listed and the tree no longer has is a deletion: never
    // signed on the strength of the tree alone (anyone who can push can delete files), only
    // when the key holder names it. The CI that renews the snapshot never does.
    if let Some(old) = &old {
        let now: std::collections::BTreeSet<&str> =
            documents.iter().map(|d| d.path.as_str()).collect();
        let gone: Vec<&str> = old
            .documents
            .iter()
            .map(|d| d.path.as_str())
            .filter(|p| !now.contains(p) && !remove.iter().any(|r| r == p))
            .collect();
        if !gone.is_empty() {
            return Err(CmdError::Usage(format!(
                "documents listed in the last snapshot are missing from the tree: {}; a deletion is signed only when named with --remove PATH",
                gone.join(", ")
            )));
        }
    }
    let old_serial = old.map_or(0, |o| o.serial);
    let expires = Timestamp::now().0 + valid_for;
    let file = SnapshotFile { serial: old_serial + 1, expires: Timestamp(expires), documents };
    let mut text = String::from(
        "# Written by `odi snapshot`: every signed document of this commit. Agents apply a commit\n\
         # only if its tree matches this list and it has not expired.\n",
    );
    text.push_str(&toml::to_string(&file).map_err(|e| CmdError::Usage(e.to_string()))?);
    if let Some(dir) = snapshot_file.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    // The old signatures sign other bytes: remove them so none lingers as a stray file.
    if let Ok(rd) = std::fs::read_dir(repo.join("trust")) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with("snapshot.toml.") && n.ends_with(".minisig") {
                let p = e.path();
                std::fs::remove_file(&p).map_err(io_err(&p))?;
            }
        }
    }
    std::fs::write(&snapshot_file, &text).map_err(io_err(&snapshot_file))?;
    sign_into(&key, text.as_bytes(), "snapshot.toml", &sig_path)?;
    Ok(SnapshotReport {
        serial: file.serial,
        documents: file.documents.len(),
        expires,
        signature: sig_path,
    })
}

/// `odi root new`: writes `trust/roots/<N+1>.toml` from the newest root N, with the serial
/// raised and the expiry `valid_for` from now, for people to edit (keys, delegations) and then
/// sign with `odi root sign`. Returns the new file.
pub fn root_new(repo: &Path, valid_for: time::Duration) -> Result<PathBuf, CmdError> {
    let tree = super::source::read(repo, None)?;
    let (serial, mut root, _) = newest_root(&tree)?;
    root.serial = serial + 1;
    root.expires = Timestamp(Timestamp::now().0 + valid_for);
    let out = repo.join(format!("{ROOTS_DIR}{}.toml", root.serial));
    if out.exists() {
        return Err(CmdError::Usage(format!("{} exists", out.display())));
    }
    let mut text = format!(
        "# Root version {}: drafted by `odi root new` from version {serial}. It takes effect once\n\
         # signed by {} of version {serial}'s keys and {} of its own (`odi root sign`).\n",
        root.serial, root.threshold, root.threshold
    );
    text.push_str(&toml::to_string(&root).map_err(|e| CmdError::Usage(e.to_string()))?);
    std::fs::write(&out, text).map_err(io_err(&out))?;
    Ok(out)
}

/// `odi root sign`: adds `key`'s signature to the newest root, as
/// `trust/roots/<N>.toml.<name>.minisig` with the key's name in root N or N-1.
pub fn root_sign(repo: &Path, key_path: &Path) -> Result<PathBuf, CmdError> {
    let tree = super::source::read(repo, None)?;
    let (serial, root, bytes) = newest_root(&tree)?;
    let (key, public) = load_key(key_path)?;
    let mut names = root.keys.clone();
    if serial > 1 {
        let prev = format!("{ROOTS_DIR}{}.toml", serial - 1);
        if let Some(b) = tree.get(&prev) {
            let text = String::from_utf8_lossy(b);
            if let Ok(p) = toml::from_str::<RootFile>(&text) {
                names.extend(p.keys);
            }
        }
    }
    let name = names
        .iter()
        .find(|k| PublicKey::parse(&k.public).is_ok_and(|p| p == public))
        .map(|k| k.name.clone())
        .ok_or_else(|| {
            CmdError::Usage(format!(
                "key {} is not a root key of version {serial} or {}",
                public.id(),
                serial.saturating_sub(1)
            ))
        })?;
    let out = repo.join(format!("{ROOTS_DIR}{serial}.toml.{name}.minisig"));
    sign_into(&key, &bytes, &format!("{serial}.toml"), &out)?;
    Ok(out)
}

/// Parses `7d`, `12h`, `30m` or `90s` for the expiry options.
pub fn parse_validity(text: &str) -> Result<time::Duration, CmdError> {
    let bad = || CmdError::Usage(format!("`{text}`: expected a duration like 7d, 12h or 30m"));
    let (num, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: i64 = num.parse().map_err(|_| bad())?;
    let d = match unit {
        "d" => time::Duration::days(n),
        "h" => time::Duration::hours(n),
        "m" => time::Duration::minutes(n),
        "s" => time::Duration::seconds(n),
        _ => return Err(bad()),
    };
    if d <= time::Duration::ZERO {
        return Err(bad());
    }
    Ok(d)
}
