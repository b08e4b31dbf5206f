//! `odi catalog import` and `odi catalog sync`: read an index that carries hashes, list what it
//! names, and record where it came from so a bot can import it again.
//!
//! Each format's reader (`apt`, `pypi`, `maven`, the checksum list and folder readers in
//! `catalog`) only turns an index into entries; this module owns what is common: the record in
//! the catalog, `--verify`, which paths of a format are mutable index files, and the sync rules.
//!
//! What must stay true: a published file's bytes never change under its path. The only paths
//! whose bytes an import or a sync may replace are the format's own index files (apt's
//! `dists/*/InRelease`, `Release` and the index files they list, but never their `by-hash/`
//! copies; PyPI's pages; Maven's `maven-metadata.xml`), which the ecosystem rewrites on every
//! release. Anything else with other bytes is refused, naming the path.

use std::path::Path;

use odi_network::raw::{CatalogFile, ImportFormat, ImportRecord};
use rayon::prelude::*;

use super::catalog::{self, ListOptions, NewEntry, Report, Signer};
use super::remote::{self, Source};
use super::CmdError;

/// What an index held, and anything worth telling the maintainer.
#[derive(Debug, Default)]
pub struct Found {
    /// Files, by catalog path, sorted.
    pub entries: Vec<NewEntry>,
    /// Warnings that did not stop the import.
    pub warnings: Vec<String>,
}

/// Whether `path`, in a catalog imported with `format`, is an index file the ecosystem
/// rewrites (see the module header).
pub fn is_mutable(format: ImportFormat, path: &str) -> bool {
    match format {
        ImportFormat::Apt => path.starts_with("dists/") && !path.contains("/by-hash/"),
        ImportFormat::Pypi => super::pypi::is_mutable(path),
        ImportFormat::Maven => super::maven::is_mutable(path),
        ImportFormat::Sha256sums | ImportFormat::Dir => false,
    }
}

/// The folder or URL a `sha256sum` list's paths are relative to.
fn list_base(from: &str) -> String {
    if remote::is_remote(from) {
        match from.rfind('/') {
            Some(i) => from[..=i].to_owned(),
            None => from.to_owned(),
        }
    } else {
        let parent = Path::new(from).parent().filter(|p| !p.as_os_str().is_empty());
        parent.unwrap_or(Path::new(".")).display().to_string()
    }
}

/// Reads the index `record` names.
pub fn collect(record: &ImportRecord) -> Result<Found, CmdError> {
    let from = record.from.as_str();
    if record.format != ImportFormat::Apt && !record.dists.is_empty() {
        return Err(CmdError::Usage("--dist is for --format apt only".into()));
    }
    let entries = match record.format {
        ImportFormat::Sha256sums => catalog::read_sums(from)?,
        ImportFormat::Dir => {
            if remote::is_remote(from) {
                return Err(CmdError::Usage(format!(
                    "--from {from}: --format dir reads a local folder"
                )));
            }
            catalog::hash_files(catalog::walk(Path::new(from))?, "")?
        }
        ImportFormat::Apt => {
            let dists = if record.dists.is_empty() {
                vec!["stable".to_owned()]
            } else {
                record.dists.clone()
            };
            super::apt::import(&Source::new(from)?, &dists)?
        }
        ImportFormat::Pypi => {
            let f = super::pypi::import(&Source::new(from)?)?;
            return Ok(Found { entries: f.entries, warnings: f.warnings });
        }
        ImportFormat::Maven => super::maven::import(&Source::new(from)?, from)?,
    };
    Ok(Found { entries, warnings: Vec::new() })
}

/// `--verify`: reads every listed file from the index's place (downloading a remote one) and
/// checks its size and hash, on every core; every mismatch is reported, naming the path.
pub fn verify(record: &ImportRecord, entries: &[NewEntry]) -> Result<(), CmdError> {
    if record.format == ImportFormat::Dir {
        return Ok(()); // hashed from the files themselves a moment ago
    }
    let base = if record.format == ImportFormat::Sha256sums {
        list_base(&record.from)
    } else {
        record.from.clone()
    };
    let source = Source::new(&base)?;
    let mut problems: Vec<String> = entries
        .par_iter()
        .filter_map(|e| match source.hash(&e.path) {
            Ok((size, sha)) if size == e.size && sha == e.sha256 => None,
            Ok((size, sha)) => Some(format!(
                "{}: the bytes do not match the index (size {size}, SHA-256 {}; the index says size {}, SHA-256 {})",
                e.path,
                hex::encode(sha),
                e.size,
                hex::encode(e.sha256)
            )),
            Err(err) => Some(err.to_string()),
        })
        .collect();
    problems.sort();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CmdError::Usage(problems.join("\n")))
    }
}

/// `odi catalog import`: lists what the index holds in release files `<format>-NNNN` (filling
/// the last one first) and records the import in the catalog file.
pub fn import(
    repo: &Path,
    name: &str,
    record: ImportRecord,
    max_per_file: usize,
    check: bool,
    signer: &Signer,
) -> Result<(Report, Vec<String>), CmdError> {
    if max_per_file == 0 {
        return Err(CmdError::Usage("--max-per-file must be at least 1".into()));
    }
    // The catalog must exist before anything is read, so a typo costs nothing.
    catalog::load_catalog(repo, name)?;
    let found = collect(&record)?;
    if found.entries.is_empty() {
        return Err(CmdError::Usage(format!("{}: the index lists no files", record.from)));
    }
    if check {
        verify(&record, &found.entries)?;
    }
    let format = record.format;
    let mutable = move |p: &str| is_mutable(format, p);
    let report = catalog::list(
        repo,
        name,
        found.entries,
        &ListOptions {
            split: Some((format.name(), max_per_file)),
            mutable: Some(&mutable),
            record: Some(record),
            ..ListOptions::default()
        },
        signer,
    )?;
    Ok((report, found.warnings))
}

/// `odi catalog sync`: imports again from the place and with the format the catalog records.
/// Writes only documents that changed, each with a raised serial. Paths the origin no longer
/// has stay listed (counted in `gone`): withdrawing a release is a decision, made with
/// `odi catalog expunge`.
pub fn sync(repo: &Path, name: &str, signer: &Signer) -> Result<(Report, Vec<String>), CmdError> {
    let file: CatalogFile = catalog::load_catalog(repo, name)?;
    let record = file.import.clone().ok_or_else(|| {
        CmdError::Usage(format!(
            "catalog `{name}` records no import: run `odi catalog import {name} --format ... --from ...` once"
        ))
    })?;
    let found = collect(&record)?;
    let format = record.format;
    let mutable = move |p: &str| is_mutable(format, p);
    let now: std::collections::BTreeSet<&str> =
        found.entries.iter().map(|e| e.path.as_str()).collect();
    let listed = catalog::listed_paths(repo, name)?;
    let gone = listed.iter().filter(|p| !now.contains(p.as_str())).count();
    let mut report = catalog::list(
        repo,
        name,
        found.entries,
        &ListOptions {
            split: Some((format.name(), catalog::DEFAULT_MAX_PER_FILE)),
            mutable: Some(&mutable),
            ..ListOptions::default()
        },
        signer,
    )?;
    report.gone = gone;
    Ok((report, found.warnings))
}

/// Commits `paths` (repository-relative; their signature files go with them) with `message`,
/// as the repository's configured git user, or as `odi` when none is set.
pub fn commit(repo: &Path, paths: &[String], message: &str) -> Result<git2::Oid, CmdError> {
    let git = |e: git2::Error| CmdError::Usage(format!("git: {e}"));
    let r = git2::Repository::open(repo).map_err(git)?;
    let mut index = r.index().map_err(git)?;
    for p in paths {
        let mut rels = vec![p.clone()];
        // Its signatures: `<file>.minisig`, or `<file>.<key>.minisig` for k-of-n roles.
        let (dir, file) = p.rsplit_once('/').unwrap_or(("", p));
        if let Ok(rd) = std::fs::read_dir(repo.join(dir)) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with(&format!("{file}.")) && n.ends_with(".minisig") {
                    rels.push(if dir.is_empty() { n } else { format!("{dir}/{n}") });
                }
            }
        }
        for rel in rels {
            if repo.join(&rel).exists() {
                index.add_path(Path::new(&rel)).map_err(git)?;
            }
        }
    }
    index.write().map_err(git)?;
    let tree = r.find_tree(index.write_tree().map_err(git)?).map_err(git)?;
    let sig = r
        .signature()
        .or_else(|_| git2::Signature::now("odi catalog sync", "odi@localhost"))
        .map_err(git)?;
    let parent = r.head().ok().and_then(|h| h.peel_to_commit().ok());
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    r.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents).map_err(git)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutable_paths_by_format() {
        use ImportFormat::*;
        for (f, p, m) in [
            (Apt, "dists/stable/InRelease", true),
            (Apt, "dists/stable/main/binary-amd64/Packages.gz", true),
            (Apt, "dists/stable/main/binary-amd64/by-hash/SHA256/ab", false),
            (Apt, "pool/main/h/hello/hello_2.10_amd64.deb", false),
            (Pypi, "simple/index.html", true),
            (Pypi, "simple/six/index.html", true),
            (Pypi, "packages/six-1.16.0-py2.py3-none-any.whl", false),
            (Maven, "junit/junit/maven-metadata.xml", true),
            (Maven, "junit/junit/4.13/junit-4.13.jar", false),
            (Sha256sums, "dists/stable/InRelease", false),
            (Dir, "simple/index.html", false),
        ] {
            assert_eq!(is_mutable(f, p), m, "{f:?} {p}");
        }
    }

    #[test]
    fn sum_lists_are_relative_to_their_folder() {
        assert_eq!(list_base("https://x.org/rel/SHA256SUMS"), "https://x.org/rel/");
        assert_eq!(list_base("dist/SHA256SUMS"), "dist");
        assert_eq!(list_base("SHA256SUMS"), ".");
    }
}
