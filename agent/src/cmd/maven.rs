//! `odi catalog import --format maven`: every file of a Maven repository tree (jars, poms,
//! `maven-metadata.xml`, and the `.sha1`/`.sha256`/`.md5`/`.asc` sidecars Maven fetches beside
//! them), with catalog paths relative to the repository root.
//!
//! A local tree is walked and hashed; symlinks to files are followed (Debian's
//! `/usr/share/maven-repo` links into `/usr/share/java`), so what is listed is the bytes of the
//! target, which the origin must serve. A remote repository is walked through its HTML folder
//! listings; a file with a `.sha256` sidecar takes its hash from it (size from `HEAD`), any
//! other file is downloaded and hashed.
//!
//! Sidecars are checked: a `.sha256` or `.sha1` whose hash differs from the file it describes
//! is refused, naming both, since Maven would refuse the file too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use sha1::Digest as _;

use super::catalog::NewEntry;
use super::remote::{anchors, digest, Source};
use super::{io_err, CmdError};

/// Sidecar suffixes: checksums and signatures of the file named without them.
const SIDECARS: [&str; 5] = [".sha1", ".sha256", ".sha512", ".md5", ".asc"];

/// A remote walk stops at this many folders, so a listing that links in circles (or a hostile
/// server) cannot keep the importer busy forever.
const MAX_FOLDERS: usize = 100_000;

/// Every file of the repository at `source` (a folder or a URL).
pub fn import(source: &Source, from: &str) -> Result<Vec<NewEntry>, CmdError> {
    let entries = if source.remote() { remote(source)? } else { local(Path::new(from))? };
    if !entries.iter().any(|e| e.path.ends_with(".pom")) {
        return Err(CmdError::Usage(format!("{from}: no .pom file found: not a Maven repository")));
    }
    check_sidecars(source, &entries)?;
    Ok(entries)
}

/// Whether a catalog path changes as versions are published: `maven-metadata.xml` and its
/// sidecars.
pub fn is_mutable(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.starts_with("maven-metadata")
        && (name.ends_with(".xml") || SIDECARS.iter().any(|s| name.ends_with(&format!(".xml{s}"))))
}

fn local(root: &Path) -> Result<Vec<NewEntry>, CmdError> {
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(io_err(&d))? {
            let p = e.map_err(io_err(&d))?.path();
            // Follows symlinks: the target's kind and bytes.
            let m = std::fs::metadata(&p).map_err(io_err(&p))?;
            if m.is_dir() {
                if std::fs::symlink_metadata(&p).map_err(io_err(&p))?.is_symlink() {
                    return Err(CmdError::Usage(format!(
                        "{}: a symlink to a folder (could loop; copy the tree with `cp -rL`)",
                        p.display()
                    )));
                }
                stack.push(p);
            } else if m.is_file() {
                let rel = p.strip_prefix(root).unwrap_or(&p).to_string_lossy().replace('\\', "/");
                files.push((rel, p));
            }
        }
    }
    files.sort();
    super::catalog::hash_files(files, "")
}

fn remote(source: &Source) -> Result<Vec<NewEntry>, CmdError> {
    let base = source.base_url()?;
    let mut folders = vec![String::new()];
    let mut seen = BTreeSet::new();
    let mut files = BTreeSet::new();
    while let Some(folder) = folders.pop() {
        if !seen.insert(folder.clone()) {
            continue;
        }
        if seen.len() > MAX_FOLDERS {
            return Err(CmdError::Usage(format!(
                "{}: more than {MAX_FOLDERS} folders listed",
                source.place("")
            )));
        }
        let Some((bytes, _)) = source.get_typed(&folder, Some("text/html"))? else {
            return Err(CmdError::Usage(format!(
                "{}: folder listing not found",
                source.place(&folder)
            )));
        };
        let page = String::from_utf8_lossy(&bytes);
        let here = base.join(&folder).map_err(|e| CmdError::Usage(e.to_string()))?;
        for a in anchors(&page) {
            let Some((_, href)) = a.iter().find(|(k, _)| k == "href") else { continue };
            if href.starts_with('?') || href.starts_with('#') {
                continue;
            }
            let Ok(url) = here.join(href) else { continue };
            // Links up, to other hosts and to sort orders are not part of the tree.
            let Some(rel) = source.rel_of(&base, &url) else { continue };
            if url.query().is_some() || !rel.starts_with(&folder) || rel == folder {
                continue;
            }
            if rel.ends_with('/') {
                folders.push(rel);
            } else {
                files.insert(rel);
            }
        }
    }
    let sums: BTreeSet<&String> = files.iter().filter(|f| f.ends_with(".sha256")).collect();
    files
        .par_iter()
        .map(|rel| {
            let sidecar = format!("{rel}.sha256");
            if sums.contains(&sidecar) {
                let text = source.get(&sidecar)?.unwrap_or_default();
                if let Some(sha) = sidecar_hash::<32>(&text) {
                    return Ok(NewEntry {
                        path: rel.clone(),
                        size: source.size(rel)?,
                        sha256: sha,
                    });
                }
            }
            let (size, sha256) = source.hash(rel)?;
            Ok(NewEntry { path: rel.clone(), size, sha256 })
        })
        .collect()
}

/// The hash a sidecar holds: the first word, hex (Maven writes the bare hash; some tools add
/// the file name after it).
fn sidecar_hash<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    let text = std::str::from_utf8(text).ok()?;
    let word = text.split_whitespace().next()?;
    let mut out = [0u8; N];
    hex::decode_to_slice(word, &mut out).ok()?;
    Some(out)
}

/// Every `.sha256` and `.sha1` sidecar must describe its file.
fn check_sidecars(source: &Source, entries: &[NewEntry]) -> Result<(), CmdError> {
    let by_path: BTreeMap<&str, &NewEntry> = entries.iter().map(|e| (e.path.as_str(), e)).collect();
    let mut problems = Vec::new();
    for e in entries {
        let Some((file, kind)) = e
            .path
            .strip_suffix(".sha256")
            .map(|f| (f, 256))
            .or_else(|| e.path.strip_suffix(".sha1").map(|f| (f, 1)))
        else {
            continue;
        };
        let Some(target) = by_path.get(file) else { continue };
        let text = source.get(&e.path)?.unwrap_or_default();
        let ok = if kind == 256 {
            sidecar_hash::<32>(&text).map(|h| h == target.sha256)
        } else {
            // SHA-1 needs the bytes again: read them (local files are cached by the kernel).
            sidecar_hash::<20>(&text).map(|h| {
                let bytes = source.get(file).ok().flatten().unwrap_or_default();
                let got: [u8; 20] = sha1::Sha1::digest(&bytes).into();
                h == got && digest(&bytes).1 == target.sha256
            })
        };
        match ok {
            Some(true) => {}
            Some(false) => problems.push(format!("{}: does not match {file}", e.path)),
            None => problems.push(format!("{}: not a hash", e.path)),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CmdError::Usage(problems.join("\n")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_mutable_and_artifacts_are_not() {
        for (p, m) in [
            ("org/x/y/maven-metadata.xml", true),
            ("org/x/y/maven-metadata.xml.sha1", true),
            ("org/x/y/maven-metadata-local.xml", true),
            ("org/x/y/1.0/y-1.0.jar", false),
            ("org/x/y/1.0/y-1.0.pom.sha1", false),
        ] {
            assert_eq!(is_mutable(p), m, "{p}");
        }
    }

    #[test]
    fn sidecars_take_the_first_word() {
        let h = "ab".repeat(20);
        assert_eq!(sidecar_hash::<20>(format!("{h}  y-1.0.jar\n").as_bytes()), Some([0xab; 20]));
        assert_eq!(sidecar_hash::<20>(b"zz"), None);
        assert_eq!(sidecar_hash::<32>(h.as_bytes()), None, "a SHA-1 is not a SHA-256");
    }
}
