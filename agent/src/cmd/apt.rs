//! `odi catalog import --format apt`: the files of a Debian repository, from the hashes its own
//! indexes carry. For each distribution: `InRelease` and `Release` (hashed as they are read),
//! every index file `Release` lists under `SHA256` (and its `by-hash/SHA256/<hash>` twin when
//! the repository says `Acquire-By-Hash: yes`, so apt keeps working while an update is half
//! propagated), then every pool file named by the `Packages` (`Filename`, `Size`, `SHA256`) and
//! `Sources` (`Directory` and `Checksums-Sha256`) indexes.
//!
//! Indexes are read uncompressed or gzip-compressed; every index read is checked against the
//! size and hash `Release` gives for it, so a tampered index is refused, naming it.

use std::collections::BTreeMap;
use std::io::Read as _;

use sha2::Digest as _;

use super::catalog::NewEntry;
use super::remote::Source;
use super::CmdError;

/// One deb822 paragraph: field name (lowercase) to value, continuation lines joined with `\n`.
type Stanza = BTreeMap<String, String>;

/// Parses deb822 text (Release, Packages, Sources) into paragraphs; an `InRelease` signature
/// armour is skipped.
pub fn parse_deb822(text: &str) -> Vec<Stanza> {
    let mut out = Vec::new();
    let mut cur = Stanza::new();
    let mut last: Option<String> = None;
    let mut in_signature = false;
    for line in text.lines() {
        if line.starts_with("-----BEGIN PGP SIGNATURE") {
            in_signature = true;
        }
        if in_signature {
            if line.starts_with("-----END PGP SIGNATURE") {
                in_signature = false;
            }
            continue;
        }
        if line.starts_with("-----BEGIN PGP SIGNED MESSAGE")
            || line.starts_with("Hash:") && cur.is_empty() && last.is_none()
        {
            continue;
        }
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            last = None;
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some(k) = &last {
                let v = cur.entry(k.clone()).or_default();
                v.push('\n');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            let k = k.trim().to_ascii_lowercase();
            cur.insert(k.clone(), v.trim().to_owned());
            last = Some(k);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// `<hash> <size> <name>` lines of a checksum field.
fn checksum_lines(field: &str, what: &str) -> Result<Vec<([u8; 32], u64, String)>, CmdError> {
    let mut out = Vec::new();
    for line in field.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let mut parts = line.split_whitespace();
        let (Some(h), Some(s), Some(n)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(CmdError::Usage(format!("{what}: malformed checksum line `{line}`")));
        };
        let mut sha = [0u8; 32];
        hex::decode_to_slice(h, &mut sha)
            .map_err(|_| CmdError::Usage(format!("{what}: `{h}` is not a SHA-256")))?;
        let size =
            s.parse().map_err(|_| CmdError::Usage(format!("{what}: `{s}` is not a size")))?;
        out.push((sha, size, n.to_owned()));
    }
    Ok(out)
}

fn entry(path: String, bytes: &[u8]) -> NewEntry {
    NewEntry { path, size: bytes.len() as u64, sha256: sha2::Sha256::digest(bytes).into() }
}

fn decode(name: &str, bytes: &[u8]) -> Result<String, CmdError> {
    let raw = if name.ends_with(".gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|e| CmdError::Usage(format!("{name}: not gzip: {e}")))?;
        out
    } else {
        bytes.to_vec()
    };
    String::from_utf8(raw).map_err(|_| CmdError::Usage(format!("{name}: not UTF-8")))
}

/// Every file of distributions `dists` of the repository at `source`, as catalog entries with
/// the repository's own paths (`dists/...`, `pool/...`).
pub fn import(source: &Source, dists: &[String]) -> Result<Vec<NewEntry>, CmdError> {
    let mut out: BTreeMap<String, NewEntry> = BTreeMap::new();
    for dist in dists {
        if dist.is_empty() || dist.contains("..") || dist.starts_with('/') {
            return Err(CmdError::Usage(format!("--dist `{dist}`: not a distribution name")));
        }
        let root = format!("dists/{dist}/");
        let release_rel = format!("{root}Release");
        let release = source.get(&release_rel)?.ok_or_else(|| {
            CmdError::Usage(format!("{release_rel}: not found in the repository"))
        })?;
        out.insert(release_rel.clone(), entry(release_rel.clone(), &release));
        for extra in ["InRelease", "Release.gpg"] {
            let rel = format!("{root}{extra}");
            if let Some(b) = source.get(&rel)? {
                out.insert(rel.clone(), entry(rel, &b));
            }
        }
        let text = decode(&release_rel, &release)?;
        let stanza = parse_deb822(&text).into_iter().next().unwrap_or_default();
        let by_hash = stanza.get("acquire-by-hash").is_some_and(|v| v.eq_ignore_ascii_case("yes"));
        let listed =
            checksum_lines(stanza.get("sha256").map(String::as_str).unwrap_or(""), &release_rel)?;
        if listed.is_empty() {
            return Err(CmdError::Usage(format!(
                "{release_rel}: no SHA256 field: this importer needs SHA-256 hashes"
            )));
        }
        // Which index files exist, by name without the compression suffix: read the plainest.
        let mut indexes: BTreeMap<String, Vec<(String, [u8; 32], u64)>> = BTreeMap::new();
        for (sha, size, name) in &listed {
            if name.contains("..") || name.starts_with('/') {
                return Err(CmdError::Usage(format!(
                    "{release_rel}: index path `{name}` leaves the distribution"
                )));
            }
            let rel = format!("{root}{name}");
            out.insert(rel.clone(), NewEntry { path: rel.clone(), size: *size, sha256: *sha });
            if by_hash {
                let dir = name.rsplit_once('/').map_or("", |(d, _)| d);
                let hashed = if dir.is_empty() {
                    format!("{root}by-hash/SHA256/{}", hex::encode(sha))
                } else {
                    format!("{root}{dir}/by-hash/SHA256/{}", hex::encode(sha))
                };
                out.insert(hashed.clone(), NewEntry { path: hashed, size: *size, sha256: *sha });
            }
            let base =
                name.strip_suffix(".gz").or_else(|| name.strip_suffix(".xz")).unwrap_or(name);
            let file = base.rsplit('/').next().unwrap_or(base);
            if file == "Packages" || file == "Sources" {
                indexes.entry(base.to_owned()).or_default().push((name.clone(), *sha, *size));
            }
        }
        for (base, variants) in &indexes {
            // Plain first, then gzip; xz alone is not read by this build.
            let pick = variants
                .iter()
                .find(|(n, _, _)| n == base)
                .or_else(|| variants.iter().find(|(n, _, _)| n.ends_with(".gz")));
            let Some((name, sha, size)) = pick else {
                return Err(CmdError::Usage(format!("{root}{base}: only an xz-compressed copy is listed; this build reads plain or gzip indexes")));
            };
            let rel = format!("{root}{name}");
            let Some(bytes) = source.get(&rel)? else {
                return Err(CmdError::Usage(format!(
                    "{rel}: listed in {release_rel} but not in the repository"
                )));
            };
            let got: [u8; 32] = sha2::Sha256::digest(&bytes).into();
            if got != *sha || bytes.len() as u64 != *size {
                return Err(CmdError::Usage(format!(
                    "{rel}: does not match the size and SHA-256 {release_rel} lists for it"
                )));
            }
            let text = decode(&rel, &bytes)?;
            let sources = base.ends_with("Sources");
            for (i, p) in parse_deb822(&text).iter().enumerate() {
                let what = format!("{rel}: paragraph {}", i + 1);
                if sources {
                    let dir = p
                        .get("directory")
                        .ok_or_else(|| CmdError::Usage(format!("{what}: no Directory")))?;
                    let files = checksum_lines(
                        p.get("checksums-sha256").map(String::as_str).unwrap_or(""),
                        &what,
                    )?;
                    for (sha, size, name) in files {
                        let path = format!("{}/{name}", dir.trim_end_matches('/'));
                        out.insert(path.clone(), NewEntry { path, size, sha256: sha });
                    }
                } else {
                    let path = p
                        .get("filename")
                        .ok_or_else(|| CmdError::Usage(format!("{what}: no Filename")))?;
                    let size = p
                        .get("size")
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| CmdError::Usage(format!("{what}: no Size")))?;
                    let h = p
                        .get("sha256")
                        .ok_or_else(|| CmdError::Usage(format!("{what}: no SHA256")))?;
                    let mut sha = [0u8; 32];
                    hex::decode_to_slice(h, &mut sha)
                        .map_err(|_| CmdError::Usage(format!("{what}: `{h}` is not a SHA-256")))?;
                    out.insert(path.clone(), NewEntry { path: path.clone(), size, sha256: sha });
                }
            }
        }
    }
    Ok(out.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_paragraphs_and_continuations() {
        let text = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nOrigin: x\nSHA256:\n aa 1 main/binary-all/Packages\n bb 2 main/binary-all/Packages.gz\n\nPackage: p\n-----BEGIN PGP SIGNATURE-----\nabc\n-----END PGP SIGNATURE-----\n";
        let p = parse_deb822(text);
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[0]["origin"], "x");
        assert_eq!(
            p[0]["sha256"],
            "\naa 1 main/binary-all/Packages\nbb 2 main/binary-all/Packages.gz"
        );
        assert_eq!(p[1]["package"], "p");
    }
}
