//! Piece hashes for Metalink (`<pieces type="sha-256" length="…">`, RFC 5854 4.2.10): a
//! client that takes pieces from several relays checks each piece as it arrives and fetches a
//! bad one again elsewhere, instead of finding a bad byte only at the end.
//!
//! Computed once per object from the directory's own verified copy (a directory holds its
//! catalogs whole, and its store holds only bytes checked against the catalog's SHA-256),
//! on first demand and off the request threads, then kept in memory. Nothing is read from
//! disk but the object itself, so no cache file can make good pieces look bad. Concurrent
//! requests for the same object wait for one computation.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use sha2::{Digest as _, Sha256};
use tokio::sync::OnceCell;

use crate::locks::lock;

/// Smallest piece: files up to this size get no piece list (the whole-file hash is one).
pub const MIN_PIECE: u64 = 1 << 20;

/// Most pieces per file: longer files get longer pieces (a power of two).
pub const MAX_PIECES: u64 = 2048;

/// Objects whose piece lists are kept; past this the cache starts afresh (lists are small:
/// 32 bytes per piece, at most 64 KiB each).
const MAX_CACHED: usize = 4096;

/// An object's piece hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pieces {
    /// Bytes per piece; the last piece may be shorter.
    pub length: u64,
    /// SHA-256 of each piece, in order.
    pub hashes: Vec<[u8; 32]>,
}

/// The piece length for a file of `size` bytes, or `None` when it is one piece.
pub fn piece_length(size: u64) -> Option<u64> {
    (size > MIN_PIECE).then(|| size.div_ceil(MAX_PIECES).next_power_of_two().max(MIN_PIECE))
}

/// Hashes `path` (`size` bytes expected) in pieces of `length`.
pub fn compute(path: &std::path::Path, size: u64, length: u64) -> std::io::Result<Pieces> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut hashes = Vec::with_capacity(size.div_ceil(length) as usize);
    let (mut h, mut in_piece, mut total) = (Sha256::new(), 0u64, 0u64);
    loop {
        let want = buf.len().min((length - in_piece) as usize);
        let n = match f.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
        in_piece += n as u64;
        total += n as u64;
        if in_piece == length {
            hashes.push(std::mem::take(&mut h).finalize().into());
            in_piece = 0;
        }
    }
    if in_piece > 0 {
        hashes.push(h.finalize().into());
    }
    if total != size {
        return Err(std::io::Error::other(format!(
            "{}: {total} bytes, expected {size}",
            path.display()
        )));
    }
    Ok(Pieces { length, hashes })
}

/// One object's piece list, computed once by whichever request comes first.
type Cell = Arc<OnceCell<Option<Arc<Pieces>>>>;

/// Piece lists by object, computed on first demand.
#[derive(Debug, Default)]
pub struct PieceCache {
    cells: Mutex<HashMap<[u8; 32], Cell>>,
}

impl PieceCache {
    /// The pieces of the object `sha256` of `size` bytes stored at `path`; `None` for a file
    /// of one piece or one that cannot be read (the Metalink then carries the whole-file hash
    /// only).
    pub async fn get(&self, sha256: [u8; 32], size: u64, path: PathBuf) -> Option<Arc<Pieces>> {
        let length = piece_length(size)?;
        let cell = {
            let mut cells = lock(&self.cells);
            if cells.len() >= MAX_CACHED && !cells.contains_key(&sha256) {
                cells.clear();
            }
            cells.entry(sha256).or_default().clone()
        };
        let pieces = cell
            .get_or_init(|| async move {
                let r = tokio::task::spawn_blocking(move || compute(&path, size, length)).await;
                match r {
                    Ok(Ok(p)) => Some(Arc::new(p)),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "cannot compute piece hashes");
                        None
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "piece hashing stopped");
                        None
                    }
                }
            })
            .await
            .clone();
        if pieces.is_none() {
            // Not stored yet, say: try again next time rather than remember the failure.
            lock(&self.cells).remove(&sha256);
        }
        pieces
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_hashes() {
        assert_eq!(piece_length(MIN_PIECE), None);
        assert_eq!(piece_length(MIN_PIECE + 1), Some(MIN_PIECE));
        assert_eq!(piece_length(10 << 30), Some(8 << 20), "10 GiB: 1280 pieces of 8 MiB");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o");
        let bytes: Vec<u8> =
            (0..(2.5 * MIN_PIECE as f64) as usize).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let p = compute(&path, bytes.len() as u64, MIN_PIECE).unwrap();
        let want: Vec<[u8; 32]> =
            bytes.chunks(MIN_PIECE as usize).map(|c| Sha256::digest(c).into()).collect();
        assert_eq!(p.hashes, want);
        assert_eq!(p.hashes.len(), 3);
        assert!(
            compute(&path, bytes.len() as u64 + 1, MIN_PIECE).is_err(),
            "a short file is refused"
        );
    }
}
