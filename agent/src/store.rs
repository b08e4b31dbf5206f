//! The content store: verified artifact bytes, addressed by SHA-256.
//!
//! ```text
//! <data_dir>/store/objects/ab/ab12…ef   complete, verified objects (the only files ever served)
//! <data_dir>/store/tmp/ab12…ef.part      downloads in progress (resumable)
//! <data_dir>/store/quarantine/…         objects whose bytes no longer match their name
//! ```
//!
//! An object appears under `objects/` only by `rename` after its hash was verified and the
//! file fsynced, and the folder is fsynced after the rename, so a `kill -9` at any point leaves
//! either no object or a whole one: a partial file is never under a served name. Because the
//! address is the hash, a path whose artifact is replaced in a later commit can never serve the
//! old bytes, and the same bytes in two catalogs are stored once.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

/// What a store operation failed on.
#[derive(Debug, thiserror::Error)]
#[error("store: {path}: {source}")]
pub struct StoreError {
    /// The file or folder under the store root that the operation touched.
    pub path: PathBuf,
    /// What the operating system said.
    pub source: io::Error,
}

fn err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError { path: path.to_owned(), source }
}

/// One stored object.
#[derive(Debug, Clone, Copy)]
pub struct ObjectInfo {
    /// File length in bytes, read when indexed at open or at commit; summed for store figures.
    pub size: u64,
    /// Last time it was served or stored; eviction goes least recent first.
    pub last_access: SystemTime,
}

/// The identity of an object file when its bytes were last hashed: a file with the same
/// identity has not been written to since (a write moves `mtime` and `ctime`). One per
/// object, so kept small: times in nanoseconds as i64 (enough until the year 2262).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

impl FileId {
    fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt as _;
        let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// The store of one agent.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    objects: Mutex<HashMap<[u8; 32], ObjectInfo>>,
    /// Objects whose bytes were hashed (at download, by a scrub, or when first served) and the
    /// file identity they had then. An object is served only while its identity matches;
    /// otherwise it is hashed again first. Empty after a restart: each object is checked once.
    verified: std::sync::Arc<Mutex<HashMap<[u8; 32], FileId>>>,
    /// Wakes the reconcile loop when an object was quarantined, so it is fetched again.
    quarantined: tokio::sync::Notify,
    /// Bumped whenever an object enters or leaves the index, so a reader can tell that the set
    /// of objects is unchanged since it last looked (the inventory's ETag rests on it).
    generation: AtomicU64,
}

/// Result of re-hashing the store.
#[derive(Debug, Default, Clone, Copy)]
pub struct ScrubReport {
    /// Objects re-hashed; objects deleted while the scrub ran are not counted.
    pub checked: usize,
    /// Objects moved to quarantine.
    pub quarantined: usize,
}

impl Store {
    /// Opens (creating) the store under `root`, indexing existing objects and deleting
    /// leftovers that are not objects. Partial downloads are kept for resuming.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        for sub in ["objects", "tmp", "quarantine"] {
            let p = root.join(sub);
            std::fs::create_dir_all(&p).map_err(err(&p))?;
        }
        let mut objects = HashMap::new();
        let objdir = root.join("objects");
        for fan in std::fs::read_dir(&objdir).map_err(err(&objdir))? {
            let fan = fan.map_err(err(&objdir))?.path();
            if !fan.is_dir() {
                continue;
            }
            for entry in std::fs::read_dir(&fan).map_err(err(&fan))? {
                let entry = entry.map_err(err(&fan))?;
                let path = entry.path();
                let meta = std::fs::symlink_metadata(&path).map_err(err(&path))?;
                match entry.file_name().to_str().and_then(parse_hex) {
                    Some(sha) if meta.is_file() => {
                        let last_access = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                        objects.insert(sha, ObjectInfo { size: meta.len(), last_access });
                    }
                    // Not something this store wrote: never serve it.
                    _ => {
                        tracing::warn!(path = %path.display(), "removing unexpected file from the object store");
                        let _ = if meta.is_dir() {
                            std::fs::remove_dir_all(&path)
                        } else {
                            std::fs::remove_file(&path)
                        };
                    }
                }
            }
        }
        Ok(Self {
            root: root.to_owned(),
            objects: Mutex::new(objects),
            verified: std::sync::Arc::default(),
            quarantined: tokio::sync::Notify::new(),
            generation: AtomicU64::new(0),
        })
    }

    fn index(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], ObjectInfo>> {
        // A panic while holding this lock cannot leave the map half-updated (single inserts
        // and removes), so a poisoned lock is safe to keep using.
        crate::locks::lock(&self.objects)
    }

    /// Path of a complete object.
    pub fn object_path(&self, sha: &[u8; 32]) -> PathBuf {
        let hex = hex::encode(sha);
        self.root.join("objects").join(&hex[..2]).join(hex)
    }

    /// Path where a download of `sha` is written until verified.
    pub fn partial_path(&self, sha: &[u8; 32]) -> PathBuf {
        self.root.join("tmp").join(format!("{}.part", hex::encode(sha)))
    }

    /// A number that changes whenever an object is added or removed. Read it before looking at
    /// the objects: an unchanged number later means nothing changed since.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether the object is stored.
    pub fn contains(&self, sha: &[u8; 32]) -> bool {
        self.index().contains_key(sha)
    }

    /// Info about a stored object.
    pub fn info(&self, sha: &[u8; 32]) -> Option<ObjectInfo> {
        self.index().get(sha).copied()
    }

    /// Every stored object.
    pub fn list(&self) -> Vec<([u8; 32], ObjectInfo)> {
        self.index().iter().map(|(k, v)| (*k, *v)).collect()
    }

    /// Number of complete objects.
    pub fn object_count(&self) -> usize {
        self.index().len()
    }

    /// Bytes of complete objects.
    pub fn object_bytes(&self) -> u64 {
        self.index().values().map(|o| o.size).sum()
    }

    /// Bytes of partial downloads on disk.
    pub fn partial_bytes(&self) -> u64 {
        std::fs::read_dir(self.root.join("tmp"))
            .map(|rd| {
                rd.filter_map(Result::ok).filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum()
            })
            .unwrap_or(0)
    }

    /// Opens an object for serving and records the access. The bytes are hashed first unless
    /// the file is unchanged since they last were; bytes that no longer match are quarantined
    /// (and the reconcile loop woken to fetch them again) and `None` is returned, so a wrong
    /// byte is never served.
    pub async fn open_object(&self, sha: &[u8; 32]) -> Option<tokio::fs::File> {
        if !self.contains(sha) {
            return None;
        }
        let path = self.object_path(sha);
        let file = tokio::fs::File::open(&path).await.ok()?;
        let id = FileId::of(&file.metadata().await.ok()?);
        if crate::locks::lock(&self.verified).get(sha) != Some(&id) {
            // Hashed and recorded on a blocking thread that finishes even if this request is
            // dropped (a client gone, a handler budget spent), so the work is never wasted.
            let (verified, p, want) = (self.verified.clone(), path.clone(), *sha);
            let checked = tokio::task::spawn_blocking(move || {
                let good = hash_file_blocking(&p).ok().map(|got| got == want);
                if good == Some(true) {
                    crate::locks::lock(&verified).insert(want, id);
                }
                good
            })
            .await
            .ok()
            .flatten();
            match checked {
                Some(true) => {}
                Some(false) => {
                    self.quarantine(sha, "when opened for serving");
                    return None;
                }
                None => return None,
            }
        }
        if let Some(o) = self.index().get_mut(sha) {
            o.last_access = SystemTime::now();
        }
        Some(file)
    }

    /// Opens an object for serving at once, without waiting: `None` unless it is stored and its
    /// file is unchanged since its bytes were last hashed (then [`Self::open_object`], which
    /// hashes, is the way). Records the access.
    pub fn open_verified_now(&self, sha: &[u8; 32]) -> Option<std::fs::File> {
        if !self.contains(sha) {
            return None;
        }
        let file = std::fs::File::open(self.object_path(sha)).ok()?;
        let id = FileId::of(&file.metadata().ok()?);
        if crate::locks::lock(&self.verified).get(sha) != Some(&id) {
            return None;
        }
        if let Some(o) = self.index().get_mut(sha) {
            o.last_access = SystemTime::now();
        }
        Some(file)
    }

    /// Fires when an object was quarantined.
    pub fn quarantined(&self) -> &tokio::sync::Notify {
        &self.quarantined
    }

    /// Moves an object whose bytes do not match its name out of service.
    fn quarantine(&self, sha: &[u8; 32], when: &str) {
        self.index().remove(sha);
        self.changed();
        crate::locks::lock(&self.verified).remove(sha);
        let path = self.object_path(sha);
        let q = self.root.join("quarantine").join(format!("{}.{}", hex::encode(sha), unix_now()));
        tracing::error!(object = %hex::encode(sha), when, "stored bytes do not match their hash; quarantined");
        if std::fs::rename(&path, &q).is_err() {
            let _ = std::fs::remove_file(&path);
        }
        self.quarantined.notify_one();
    }

    /// Records that `sha`'s file, as it is now, holds the right bytes.
    fn mark_verified(&self, sha: &[u8; 32]) {
        if let Ok(meta) = std::fs::metadata(self.object_path(sha)) {
            crate::locks::lock(&self.verified).insert(*sha, FileId::of(&meta));
        }
    }

    /// Moves a verified, fsynced partial download into place and makes the rename durable.
    pub fn commit(&self, sha: &[u8; 32]) -> Result<(), StoreError> {
        let from = self.partial_path(sha);
        let to = self.object_path(sha);
        let fan = to.parent().unwrap_or(&self.root).to_owned();
        std::fs::create_dir_all(&fan).map_err(err(&fan))?;
        let size = std::fs::metadata(&from).map_err(err(&from))?.len();
        std::fs::rename(&from, &to).map_err(err(&to))?;
        std::fs::File::open(&fan).and_then(|d| d.sync_all()).map_err(err(&fan))?;
        self.index().insert(*sha, ObjectInfo { size, last_access: SystemTime::now() });
        self.changed();
        // Verified while it was downloaded.
        self.mark_verified(sha);
        Ok(())
    }

    /// Deletes an object (expunged, unassigned or evicted).
    pub fn remove(&self, sha: &[u8; 32]) -> Result<(), StoreError> {
        let path = self.object_path(sha);
        self.index().remove(sha);
        self.changed();
        crate::locks::lock(&self.verified).remove(sha);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError { path, source: e }),
        }
    }

    /// Deletes partial downloads whose hash is not in `keep`.
    pub fn prune_partials(&self, keep: &dyn Fn(&[u8; 32]) -> bool) {
        let Ok(rd) = std::fs::read_dir(self.root.join("tmp")) else { return };
        for e in rd.filter_map(Result::ok) {
            let name = e.file_name();
            let sha = name.to_str().and_then(|n| n.strip_suffix(".part")).and_then(parse_hex);
            if !sha.is_some_and(|s| keep(&s)) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// Re-hashes every object, moving any whose bytes do not match its name to quarantine.
    /// Paced by `pause` between objects so a scrub does not starve serving.
    pub async fn scrub(&self, pause: Duration) -> ScrubReport {
        let mut report = ScrubReport::default();
        for (sha, _) in self.list() {
            let path = self.object_path(&sha);
            // The identity before hashing: a write during the hash must not be marked good.
            let before = std::fs::metadata(&path).ok().map(|m| FileId::of(&m));
            let ok = match hash_file(&path).await {
                Ok(got) => got == sha,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(_) => false,
            };
            report.checked += 1;
            if ok {
                if let Some(id) = before {
                    crate::locks::lock(&self.verified).insert(sha, id);
                }
            } else {
                self.quarantine(&sha, "by the scrub");
                report.quarantined += 1;
            }
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
        report
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn parse_hex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    (s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then_some(())?;
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// SHA-256 of a file, streamed on a blocking thread: plain `read` calls into one large buffer
/// keep hashing at the speed of `openssl dgst` (tokio's file reads cost a thread hop per read).
pub async fn hash_file(path: &Path) -> io::Result<[u8; 32]> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || hash_file_blocking(&path))
        .await
        .map_err(io::Error::other)?
}

/// [`hash_file`] for callers already off the async threads.
pub fn hash_file_blocking(path: &Path) -> io::Result<[u8; 32]> {
    hash_file_counting(path, |_| {}).map(|(_, sha)| sha)
}

/// [`hash_file_blocking`] that also returns the size and reports each chunk read to
/// `on_read` (a progress bar, say).
pub fn hash_file_counting(path: &Path, on_read: impl FnMut(u64)) -> io::Result<(u64, [u8; 32])> {
    hash_file_with(path, &mut vec![0u8; 1 << 20], on_read)
}

/// [`hash_file_counting`] reading through the caller's `buf`, for callers hashing many small
/// files: a fresh 1 MiB buffer per file is an mmap and a munmap each time.
pub fn hash_file_with(
    path: &Path,
    buf: &mut [u8],
    mut on_read: impl FnMut(u64),
) -> io::Result<(u64, [u8; 32])> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut size = 0u64;
    loop {
        let n = match f.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
        size += n as u64;
        on_read(n as u64);
    }
    Ok((size, h.finalize().into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(b: &[u8]) -> [u8; 32] {
        Sha256::digest(b).into()
    }

    #[tokio::test]
    async fn commit_scrub_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (a, b) = (sha(b"aaa"), sha(b"bbb"));
        std::fs::write(store.partial_path(&a), b"aaa").unwrap();
        store.commit(&a).unwrap();
        std::fs::write(store.partial_path(&b), b"bbb").unwrap();
        store.commit(&b).unwrap();
        assert!(store.contains(&a) && store.object_bytes() == 6);
        // Rot one object on disk: the scrub must catch it.
        std::fs::write(store.object_path(&b), b"bbX").unwrap();
        let r = store.scrub(Duration::ZERO).await;
        assert_eq!((r.checked, r.quarantined), (2, 1));
        assert!(!store.contains(&b));
        // A stray file under objects/ is removed on open; partials stay for resuming.
        std::fs::write(dir.path().join("objects").join("zz"), b"x").unwrap();
        std::fs::create_dir_all(dir.path().join("objects/00")).unwrap();
        std::fs::write(dir.path().join("objects/00/not-a-hash"), b"x").unwrap();
        std::fs::write(store.partial_path(&b), b"bb").unwrap();
        let again = Store::open(dir.path()).unwrap();
        assert!(again.contains(&a) && !again.contains(&b));
        assert!(!dir.path().join("objects/00/not-a-hash").exists());
        assert_eq!(again.partial_bytes(), 2);
        again.prune_partials(&|_| false);
        assert_eq!(again.partial_bytes(), 0);
    }
}
