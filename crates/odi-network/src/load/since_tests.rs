//! `load_since` against `load`: over random sequences of real signed commits in a real git
//! repository, applying each commit on top of the last one gives exactly what loading the
//! whole commit gives, and the incremental path is really taken where it should be; and
//! `assign_since` on top of the table before gives exactly what `assign` gives.

use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use sha2::Digest as _;
use time::OffsetDateTime;

use crate::assign::{assign, Assignment, Extras};
use crate::builder::{commit_all, NetworkBuilder};
use crate::git::{read_commit, read_since};
use crate::load::{load, load_since, Loaded};
use crate::raw::{
    ArtifactEntry, CatalogFile, DirectoryFile, DirectoryKind, RelayFile, ReleaseFile, Sha256,
    Timestamp,
};
use crate::safe_path::ArtifactPath;
use crate::units::ByteSize;
use crate::{Network, TrustAnchor, TrustState};

/// One change between two commits.
#[derive(Debug, Clone)]
enum Op {
    /// A new release file of `n` artifacts in catalog `catalog % 2`.
    AddRelease { catalog: usize, n: usize },
    /// The release file at `pick` (modulo their number) goes.
    RemoveRelease { pick: usize },
    /// The release file at `pick` gains `add` artifacts and loses up to `drop`.
    ChangeRelease { pick: usize, add: usize, drop: usize },
    /// The first live artifact of the release file at `pick` is expunged.
    Expunge { pick: usize },
    /// One artifact moves from one release file to another in the same commit.
    Move { from: usize, to: usize },
    /// A relay joins.
    RelayJoin,
    /// The relay at `pick` leaves (one always stays).
    RelayLeave { pick: usize },
    /// A catalog's own file changes (its replicas).
    CatalogMeta { catalog: usize },
    /// An invalid commit: a release file lists a path another one has. Refused by both.
    Duplicate { pick: usize },
    /// A new catalog: only the whole load takes it.
    NewCatalog,
    /// Every relay's quota becomes small (so that it binds) or large again.
    Quota { small: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..2usize, 1..12usize).prop_map(|(catalog, n)| Op::AddRelease { catalog, n }),
        1 => any::<usize>().prop_map(|pick| Op::RemoveRelease { pick }),
        3 => (any::<usize>(), 0..4usize, 0..4usize)
            .prop_map(|(pick, add, drop)| Op::ChangeRelease { pick, add, drop }),
        1 => any::<usize>().prop_map(|pick| Op::Expunge { pick }),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(from, to)| Op::Move { from, to }),
        1 => Just(Op::RelayJoin),
        1 => any::<usize>().prop_map(|pick| Op::RelayLeave { pick }),
        1 => (0..2usize).prop_map(|catalog| Op::CatalogMeta { catalog }),
        1 => any::<usize>().prop_map(|pick| Op::Duplicate { pick }),
        1 => Just(Op::NewCatalog),
        2 => any::<bool>().prop_map(|small| Op::Quota { small }),
    ]
}

/// The network under test and the counters that keep its names unique.
struct World {
    b: NetworkBuilder,
    next_artifact: usize,
    next_release: usize,
    next_relay: usize,
    /// The quota of every relay: [`SMALL_QUOTA`] or a GiB.
    quota: u64,
}

/// A quota a few dozen of the test's artifacts fill: with it the quota binds in some commits
/// and not in others.
const SMALL_QUOTA: u64 = 8 << 10;

impl World {
    fn new() -> Self {
        let mut b = NetworkBuilder::new().unwrap().with_snapshot().unwrap();
        b.root_expires = Some(Timestamp(OffsetDateTime::now_utc() + time::Duration::days(30)));
        for c in ["c0", "c1"] {
            b.catalogs.insert(c.into(), catalog(c, 2));
        }
        b.directories.insert(
            "d".into(),
            DirectoryFile {
                serial: 1,
                name: "d".into(),
                url: "https://d.example/".into(),
                region: "eu".into(),
                kind: DirectoryKind::Directory,
                contact: None,
                catalogs: vec!["c0".into(), "c1".into()],
                links: vec![],
                references: vec![],
            },
        );
        let mut w = World { b, next_artifact: 0, next_release: 0, next_relay: 0, quota: 1 << 30 };
        for _ in 0..3 {
            w.relay_join();
        }
        for c in 0..2 {
            w.add_release(c, 5);
        }
        w
    }

    fn entries(&mut self, n: usize) -> Vec<ArtifactEntry> {
        (0..n)
            .map(|_| {
                self.next_artifact += 1;
                let path = format!("pool/a{}.tar.gz", self.next_artifact);
                ArtifactEntry {
                    sha256: Sha256(sha2::Sha256::digest(path.as_bytes()).into()),
                    path: ArtifactPath::new(&path).unwrap(),
                    size: 1000 + self.next_artifact as u64,
                    published: None,
                    expunged: None,
                }
            })
            .collect()
    }

    fn add_release(&mut self, catalog: usize, n: usize) {
        let name = format!("c{catalog}");
        self.next_release += 1;
        let artifacts = self.entries(n);
        self.b.releases.insert(
            (name.clone(), format!("r{}", self.next_release)),
            ReleaseFile { serial: 1, catalog: name, artifacts },
        );
    }

    fn relay_join(&mut self) {
        self.next_relay += 1;
        let name = format!("relay{}", self.next_relay);
        self.b.relays.insert(
            name.clone(),
            RelayFile {
                serial: 1,
                name: name.clone(),
                url: format!("https://{name}.example/"),
                region: "eu".into(),
                contact: "ops@example.org".into(),
                quota: ByteSize(self.quota),
                bandwidth: None,
                directories: vec!["d".into()],
                catalogs: vec!["c0".into(), "c1".into()],
                tags: vec![],
                location: None,
                countries: vec![],
                exclude_countries: vec![],
            },
        );
    }

    /// The release file at `pick` modulo their number, if any.
    fn release(&mut self, pick: usize) -> Option<&mut ReleaseFile> {
        let n = self.b.releases.len();
        let key = self.b.releases.keys().nth(pick.checked_rem(n)?)?.clone();
        self.b.releases.get_mut(&key)
    }

    /// Applies `op`; returns whether the whole load must refuse the commit, and whether the
    /// incremental path must be able to take it.
    fn apply(&mut self, op: &Op) -> (bool, bool) {
        match op {
            Op::AddRelease { catalog, n } => self.add_release(*catalog, *n),
            Op::RemoveRelease { pick } => {
                let n = self.b.releases.len();
                if let Some(key) = pick.checked_rem(n).and_then(|i| self.b.releases.keys().nth(i)) {
                    let key = key.clone();
                    self.b.releases.remove(&key);
                }
            }
            Op::ChangeRelease { pick, add, drop } => {
                let fresh = self.entries(*add);
                if let Some(r) = self.release(*pick) {
                    r.serial += 1;
                    let keep = r.artifacts.len().saturating_sub(*drop);
                    r.artifacts.truncate(keep);
                    r.artifacts.extend(fresh);
                }
            }
            Op::Expunge { pick } => {
                if let Some(r) = self.release(*pick) {
                    if let Some(a) = r.artifacts.iter_mut().find(|a| a.expunged.is_none()) {
                        a.expunged = Some("withdrawn upstream".into());
                        r.serial += 1;
                    }
                }
            }
            Op::Move { from, to } => {
                let n = self.b.releases.len();
                let keys: Vec<_> = self.b.releases.keys().cloned().collect();
                let (Some(f), Some(t)) = (from.checked_rem(n), to.checked_rem(n)) else {
                    return (false, true);
                };
                // Only within one catalog: a path is unique per catalog.
                if f != t && keys[f].0 == keys[t].0 {
                    let moved = self.b.releases.get_mut(&keys[f]).unwrap().artifacts.pop();
                    if let Some(a) = moved {
                        self.b.releases.get_mut(&keys[f]).unwrap().serial += 1;
                        let to = self.b.releases.get_mut(&keys[t]).unwrap();
                        to.serial += 1;
                        to.artifacts.push(a);
                    }
                }
            }
            Op::RelayJoin => self.relay_join(),
            Op::RelayLeave { pick } => {
                if self.b.relays.len() > 1 {
                    let key = self.b.relays.keys().nth(pick % self.b.relays.len()).unwrap();
                    let key = key.clone();
                    self.b.relays.remove(&key);
                }
            }
            Op::CatalogMeta { catalog } => {
                let c = self.b.catalogs.get_mut(&format!("c{catalog}")).unwrap();
                c.serial += 1;
                c.replicas = if c.replicas == 1 { 2 } else { 1 };
            }
            Op::Duplicate { pick } => {
                let Some(r) = self.release(*pick) else { return (false, true) };
                let Some(a) = r.artifacts.first().cloned() else { return (false, true) };
                let catalog = r.catalog.clone();
                self.next_release += 1;
                self.b.releases.insert(
                    (catalog.clone(), format!("r{}", self.next_release)),
                    ReleaseFile { serial: 1, catalog, artifacts: vec![a] },
                );
                return (true, false);
            }
            Op::NewCatalog => {
                let name = format!("n{}", self.b.catalogs.len());
                self.b.catalogs.insert(name.clone(), catalog(&name, 1));
                return (false, false);
            }
            Op::Quota { small } => {
                self.quota = if *small { SMALL_QUOTA } else { 1 << 30 };
                for r in self.b.relays.values_mut() {
                    if r.quota.0 != self.quota {
                        r.quota = ByteSize(self.quota);
                        r.serial += 1;
                    }
                }
            }
        }
        (false, true)
    }
}

fn catalog(name: &str, replicas: u32) -> CatalogFile {
    CatalogFile {
        serial: 1,
        name: name.into(),
        description: "incremental tests".into(),
        tags: vec![],
        origins: vec!["https://origin.example/".into()],
        replicas,
        import: None,
        artifacts: vec![],
    }
}

fn assert_same(incremental: &Loaded, full: &Loaded) {
    let (a, b): (&Network, &Network) = (&incremental.network, &full.network);
    assert_eq!(a.catalogs, b.catalogs);
    assert_eq!(a.directories, b.directories);
    assert_eq!(a.relays, b.relays);
    assert_eq!(a.root.pin(), b.root.pin());
    assert_eq!(format!("{:?}", a.snapshot), format!("{:?}", b.snapshot));
    assert_eq!(incremental.state, full.state);
    assert_eq!(incremental.memo.ids(), full.memo.ids());
}

/// The two tables are the same: placements, shares, and whether a quota bound.
fn assert_same_table(patched: &Assignment, whole: &Assignment) {
    assert_eq!(patched.catalogs, whole.catalogs);
    let shares = |t: &Assignment| {
        t.relays
            .iter()
            .map(|s| {
                let held: Vec<String> = t.artifacts_of(s).map(|p| p.path.to_owned()).collect();
                (s.name.clone(), s.quota, s.assigned_bytes, s.artifacts, held)
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(shares(patched), shares(whole));
    assert_eq!(patched.bound, whole.bound);
    assert_eq!(patched.extras, whole.extras);
}

/// Hot extras held the same over every commit: one artifact of `c0` gets a copy more.
fn extras() -> Extras {
    [(("c0".to_owned(), "pool/a1.tar.gz".to_owned()), 1)].into_iter().collect()
}

fn config() -> ProptestConfig {
    let mut c = ProptestConfig::with_cases(16);
    c.rng_seed = RngSeed::Fixed(0x1c_2e_3e);
    c.failure_persistence = None;
    c
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn incremental_apply_equals_the_whole_load(ops in prop::collection::vec(op(), 1..8)) {
        let dir = tempfile::tempdir().unwrap();
        let repo_dir = dir.path();
        let mut w = World::new();
        let anchor = TrustAnchor::default();
        let now = OffsetDateTime::now_utc();
        w.b.write(repo_dir).unwrap();
        let first = commit_all(repo_dir, "first").unwrap();
        let repo = git2::Repository::open(repo_dir).unwrap();
        let mut applied = load(&read_commit(&repo, first).unwrap(), &anchor, &TrustState::default(), now)
            .unwrap();
        let extras = extras();
        let mut table = assign(&applied.network, &extras);
        let mut taken = 0;
        for (i, op) in ops.iter().enumerate() {
            let before = w.b.releases.clone();
            let (relays_before, catalogs_before) = (w.b.relays.clone(), w.b.catalogs.clone());
            let (refused, incremental_expected) = w.apply(op);
            w.b.write(repo_dir).unwrap();
            let commit = commit_all(repo_dir, &format!("step {i}: {op:?}")).unwrap();
            let full = load(&read_commit(&repo, commit).unwrap(), &anchor, &applied.state, now);
            let delta = read_since(&repo, commit, applied.memo.ids()).unwrap();
            let since =
                load_since(&delta, &applied.network, &applied.memo, &anchor, &applied.state, now);
            prop_assert_eq!(full.is_err(), refused, "{:?}: {:?}", op, full.as_ref().err());
            let full = match (full, since) {
                (Ok(full), Some(since)) => {
                    assert_same(&since, &full);
                    taken += 1;
                    // What a running agent goes on with: the network sharing the one before.
                    Loaded { network: since.network, ..full }
                }
                (Ok(full), None) => {
                    prop_assert!(!incremental_expected, "{:?} was not applied incrementally", op);
                    full
                }
                (Err(_), None) => {
                    w.b.releases = before;
                    continue;
                }
                (Err(e), Some(_)) => {
                    prop_assert!(false, "{:?}: refused whole ({}), taken incrementally", op, e);
                    unreachable!()
                }
            };
            let whole = assign(&full.network, &extras);
            let patched = crate::assign::since(&table, &applied.network, &full.network, &extras);
            // Relays and catalogs' own files unchanged (artifacts alone changed, or nothing),
            // and no quota binds before or after: then the patch is exact and must be taken.
            let settings_same = w.b.relays == relays_before && w.b.catalogs == catalogs_before;
            prop_assert_eq!(
                patched.is_some(),
                settings_same && !table.bound && !whole.bound,
                "{:?}: bound before {}, after {}", op, table.bound, whole.bound
            );
            if let Some(patched) = &patched {
                assert_same_table(patched, &whole);
            }
            let since = crate::assign::assign_since(&table, &applied.network, &full.network, &extras);
            assert_same_table(&since, &whole);
            table = whole;
            applied = full;
        }
        let expected = ops.iter().filter(|op| !matches!(op, Op::Duplicate { .. } | Op::NewCatalog)).count();
        prop_assert_eq!(taken, expected);
    }
}

/// The cheap path really is cheap: an unchanged catalog document is neither read nor parsed,
/// and the network shares the catalogs of the one before.
#[test]
fn unchanged_release_files_are_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = World::new();
    for _ in 0..4 {
        w.add_release(0, 20);
    }
    w.b.write(dir.path()).unwrap();
    let first = commit_all(dir.path(), "first").unwrap();
    let repo = git2::Repository::open(dir.path()).unwrap();
    let now = OffsetDateTime::now_utc();
    let anchor = TrustAnchor::default();
    let applied =
        load(&read_commit(&repo, first).unwrap(), &anchor, &TrustState::default(), now).unwrap();
    w.add_release(1, 3);
    w.b.write(dir.path()).unwrap();
    let second = commit_all(dir.path(), "second").unwrap();
    let delta = read_since(&repo, second, applied.memo.ids()).unwrap();
    let unread: Vec<&String> =
        delta.tree.ids().keys().filter(|p| delta.tree.get(p).is_none()).collect();
    // Both catalogs' own files and every release file but the new one.
    assert_eq!(unread.len(), 2 + 4 + 2, "{unread:?}");
    assert!(delta.old.is_empty(), "nothing changed or went");
    let since = load_since(&delta, &applied.network, &applied.memo, &anchor, &applied.state, now)
        .expect("taken incrementally");
    assert!(since.network.catalogs["c0"]
        .artifacts
        .ptr_eq(&applied.network.catalogs["c0"].artifacts));
    assert_eq!(since.network.catalogs["c1"].artifacts.len(), 5 + 3);
    // The whole load refuses a tree with unread files rather than miss their artifacts.
    let err = load(&delta.tree, &anchor, &applied.state, now).unwrap_err();
    assert!(err.to_string().contains("was not read"), "{err}");
}

/// A change to a signature alone, or to the roots, makes the documents it covers read again.
#[test]
fn a_changed_signature_is_verified_again() {
    let dir = tempfile::tempdir().unwrap();
    let w = World::new();
    w.b.write(dir.path()).unwrap();
    let first = commit_all(dir.path(), "first").unwrap();
    let repo = git2::Repository::open(dir.path()).unwrap();
    let ids = read_commit(&repo, first).unwrap().ids().clone();
    let sig = "catalogs/c0/catalog.toml.minisig";
    let mut bytes = std::fs::read(dir.path().join(sig)).unwrap();
    bytes.extend_from_slice(b"\n");
    std::fs::write(dir.path().join(sig), bytes).unwrap();
    let second = commit_all(dir.path(), "resigned").unwrap();
    let delta = read_since(&repo, second, &ids).unwrap();
    assert!(delta.tree.get("catalogs/c0/catalog.toml").is_some());
    assert!(delta.tree.get("catalogs/c1/catalog.toml").is_none());
}
