//! Which relays hold which artifact: weighted rendezvous hashing (HRW), a pure function of
//! the verified network, so directories and relays compute the same table without talking.
//!
//! # The hash (stable across versions; changing it moves every artifact)
//! - relay key `r = be_u64(sha256("odi-hrw-v1\0relay\0" || relay_name)[0..8])`
//! - artifact key `a = be_u64(sha256("odi-hrw-v1\0artifact\0" || catalog || "\0" || path)[0..8])`
//! - `h = mix(r XOR a)` with `mix` the SplitMix64 finaliser:
//!   `z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9; z = (z ^ (z >> 27)) * 0x94d049bb133111eb; z ^ (z >> 31)`
//!   (wrapping multiplications)
//! - `u = ((h >> 11) + 0.5) / 2^53`, a uniform number in (0, 1)
//! - `score = quota_bytes / -ln(u)`; the highest scores win, ties broken by relay name.
//!
//! This is the logarithmic method of weighted rendezvous hashing: a relay's expected share
//! is its quota over the total, and adding or removing a relay moves only the artifacts it
//! gains or loses.
//!
//! # Placement
//! Artifacts are placed in order of (catalog name, path). Each takes the `replicas` (plus any
//! hot extras) best-scoring subscribers that still have room for it within their quota; a
//! relay without room is skipped, so the next one by score takes the copy. An artifact no
//! subscriber has room for is left unplaced and the directory serves it itself.

use std::collections::{BTreeMap, HashMap};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::model::Network;
use crate::safe_path::ArtifactPath;

/// Candidates computed per artifact before the quota pass; more are computed on demand.
const SLACK: usize = 4;

/// The relay key of `name`.
pub fn relay_key(name: &str) -> u64 {
    key(&[b"odi-hrw-v1\0relay\0", name.as_bytes()])
}

/// The artifact key of `catalog`/`path`.
pub fn artifact_key(catalog: &str, path: &str) -> u64 {
    key(&[b"odi-hrw-v1\0artifact\0", catalog.as_bytes(), b"\0", path.as_bytes()])
}

fn key(parts: &[&[u8]]) -> u64 {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    let d = h.finalize();
    u64::from_be_bytes(d[..8].try_into().unwrap_or_default())
}

/// SplitMix64's finaliser: a bijection that spreads every input bit over the output.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The HRW score of a relay (key and weight) for an artifact key.
pub fn score(relay_key: u64, weight: f64, artifact_key: u64) -> f64 {
    let h = mix(relay_key ^ artifact_key);
    let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    weight / -u.ln()
}

/// Where one live artifact is placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Size in bytes, from the catalog; what counts against the holders' quotas.
    pub size: u64,
    /// Holders as indices into [`Assignment::relays`], best first.
    pub holders: Vec<u32>,
    /// Copies wanted (replicas plus hot extras); more than `holders.len()` when quota ran out
    /// or the catalog has fewer subscribers.
    pub wanted: u32,
}

/// One placement with the artifact it is for.
#[derive(Debug, Clone, Copy)]
pub struct Placed<'a> {
    /// Catalog name.
    pub catalog: &'a str,
    /// Path in the catalog.
    pub path: &'a str,
    /// Its holders.
    pub placement: &'a Placement,
}

/// A relay's share.
#[derive(Debug, Clone)]
pub struct Share {
    /// The relay's name; hashed into its HRW key, so renaming a relay reshuffles its share.
    pub name: String,
    /// The relay's quota in bytes, copied from its relay file.
    pub quota: u64,
    /// Sum of the sizes of the artifacts in this share; never more than `quota`.
    pub assigned_bytes: u64,
    /// Number of artifacts in this share.
    pub artifacts: usize,
    /// The share's artifacts as (catalog index, path), found on first use: only a relay asks
    /// for its own, so the table does not keep a list per relay.
    held: std::sync::OnceLock<Vec<(u32, ArtifactPath)>>,
}

impl Share {
    fn new(name: &str, quota: u64) -> Self {
        Share {
            name: name.to_owned(),
            quota,
            assigned_bytes: 0,
            artifacts: 0,
            held: Default::default(),
        }
    }
}

/// Placements of one catalog's live artifacts, by path. Persistent: the table of the next
/// commit shares every unchanged placement with this one (see [`assign_since`]).
pub type CatalogPlacements = imbl::OrdMap<ArtifactPath, Placement>;

/// The whole assignment table at one commit.
#[derive(Debug, Clone, Default)]
pub struct Assignment {
    /// Every catalog's placements, by catalog name; placement order is (catalog, path).
    pub catalogs: BTreeMap<String, CatalogPlacements>,
    /// Every relay, by name order.
    pub relays: Vec<Share>,
    /// Whether some relay's quota kept an artifact from one of its best-scoring subscribers.
    /// Then a change anywhere can move copies elsewhere, and only a whole assignment is
    /// exact; otherwise every placement depends on its artifact alone.
    pub bound: bool,
    /// The hot extras this table was computed with.
    pub extras: Extras,
}

impl Assignment {
    /// The placement of one artifact.
    pub fn placement(&self, catalog: &str, path: &str) -> Option<&Placement> {
        self.catalogs.get(catalog)?.get(path)
    }

    /// Names of the relays that hold an artifact, best first.
    pub fn holders(&self, catalog: &str, path: &str) -> Vec<&str> {
        self.placement(catalog, path)
            .map(|p| p.holders.iter().map(|&r| self.relays[r as usize].name.as_str()).collect())
            .unwrap_or_default()
    }

    /// A relay's share.
    pub fn share(&self, relay: &str) -> Option<&Share> {
        self.relays.binary_search_by(|s| s.name.as_str().cmp(relay)).ok().map(|i| &self.relays[i])
    }

    /// Every placement, in (catalog, path) order.
    pub fn iter(&self) -> impl Iterator<Item = Placed<'_>> + '_ {
        self.catalogs.iter().flat_map(|(catalog, map)| {
            map.iter().map(move |(path, placement)| Placed {
                catalog,
                path: path.as_str(),
                placement,
            })
        })
    }

    /// Number of placements (live artifacts).
    pub fn len(&self) -> usize {
        self.catalogs.values().map(|m| m.len()).sum()
    }

    /// Whether nothing is placed.
    pub fn is_empty(&self) -> bool {
        self.catalogs.values().all(|m| m.is_empty())
    }

    /// The artifacts of a relay's share, in (catalog, path) order. The first call on a table
    /// looks through every placement once; later ones reuse what it found.
    pub fn artifacts_of<'a>(&'a self, share: &'a Share) -> impl Iterator<Item = Placed<'a>> + 'a {
        let names: Vec<&String> = self.catalogs.keys().collect();
        let held = share.held.get_or_init(|| {
            let Some(me) = self.relays.iter().position(|s| std::ptr::eq(s, share)) else {
                return Vec::new();
            };
            let mut out = Vec::with_capacity(share.artifacts);
            for (i, map) in self.catalogs.values().enumerate() {
                for (path, p) in map {
                    if p.holders.contains(&(me as u32)) {
                        out.push((i as u32, path.clone()));
                    }
                }
            }
            out
        });
        held.iter().filter_map(move |(c, path)| {
            let catalog = names.get(*c as usize)?;
            let placement = self.catalogs.get(*catalog)?.get(path.as_str())?;
            Some(Placed { catalog, path: path.as_str(), placement })
        })
    }
}

/// Hot artifacts that get extra copies: (catalog, path) to extra replicas.
pub type Extras = BTreeMap<(String, String), u32>;

/// The relays of a network as the scoring needs them, and each catalog's subscribers.
struct Scorer<'n> {
    relays: Vec<&'n crate::model::Relay>,
    keys: Vec<u64>,
    weights: Vec<f64>,
    subs: BTreeMap<&'n str, Vec<u32>>,
}

impl<'n> Scorer<'n> {
    fn new(network: &'n Network) -> Self {
        let relays: Vec<_> = network.relays.values().collect();
        let keys = relays.iter().map(|r| relay_key(&r.name)).collect();
        let weights = relays.iter().map(|r| r.quota.0 as f64).collect();
        let subs = network
            .catalogs
            .values()
            .map(|c| {
                let subs = relays
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.subscribes(c))
                    .map(|(i, _)| i as u32)
                    .collect();
                (c.name.as_str(), subs)
            })
            .collect();
        Scorer { relays, keys, weights, subs }
    }

    fn by_rank(&self, a: &(f64, u32), b: &(f64, u32)) -> std::cmp::Ordering {
        b.0.total_cmp(&a.0)
            .then_with(|| self.relays[a.1 as usize].name.cmp(&self.relays[b.1 as usize].name))
    }

    /// Every subscriber in `subs`, best first: the fallback when the best few ran out of quota.
    fn ranked_all(&self, subs: &[u32], akey: u64) -> Vec<u32> {
        let mut scored: Vec<(f64, u32)> = subs
            .iter()
            .map(|&r| (score(self.keys[r as usize], self.weights[r as usize], akey), r))
            .collect();
        scored.sort_unstable_by(|a, b| self.by_rank(a, b));
        scored.into_iter().map(|(_, r)| r).collect()
    }

    /// The best `k` of `subs`, best first, appended to `out`; `top` is scratch space.
    ///
    /// Skips the logarithm for a relay whose score cannot reach them: `-ln(u) >= 1 - u`, so
    /// `score <= weight / (1 - u)`, and a relay whose bound is below the current floor cannot
    /// be among the best. Skipped relays would have lost anyway, so the result is exactly the
    /// plain sort's (a property test checks it).
    fn best(
        &self,
        subs: &[u32],
        akey: u64,
        k: usize,
        top: &mut Vec<(f64, u32)>,
        out: &mut Vec<u32>,
    ) {
        top.clear();
        // Below this a relay's bound cannot reach the k-th best score. The margin (far above
        // the rounding of `ln`) keeps a relay whose score might tie the floor in play, since a
        // tie is broken by name.
        let mut floor = f64::NEG_INFINITY;
        for &r in subs {
            let h = mix(self.keys[r as usize] ^ akey);
            let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            let w = self.weights[r as usize];
            if w < floor * (1.0 - u) * (1.0 - 1e-9) {
                continue;
            }
            let s = (w / -u.ln(), r);
            let at = top.partition_point(|t| self.by_rank(t, &s).is_lt());
            if at < k {
                top.insert(at, s);
                top.truncate(k);
                if top.len() == k {
                    floor = top[k - 1].0;
                }
            }
        }
        out.extend(top.iter().map(|&(_, r)| r));
    }
}

/// Computes the assignment for `network`.
///
/// Cost: one pass over the subscribers of each artifact's catalog, in parallel, keeping only
/// the best `wanted + SLACK` relays ([`Scorer::best`]); then the quota pass in placement
/// order, which falls back to every subscriber's score only where quota ran out.
pub fn assign(network: &Network, extras: &Extras) -> Assignment {
    let scorer = Scorer::new(network);
    struct Item<'a> {
        catalog: u32,
        path: &'a ArtifactPath,
        size: u64,
        wanted: u32,
        subs: &'a [u32],
    }
    let mut items = Vec::with_capacity(network.catalogs.values().map(|c| c.artifacts.len()).sum());
    for (ci, c) in network.catalogs.values().enumerate() {
        let subs = scorer.subs[c.name.as_str()].as_slice();
        // Extras of this catalog by path, looked up without building a key per artifact.
        let hot: HashMap<&str, u32> = extras
            .iter()
            .filter(|((cat, _), _)| *cat == c.name)
            .map(|((_, p), n)| (p.as_str(), *n))
            .collect();
        for a in c.live() {
            let extra =
                if hot.is_empty() { 0 } else { hot.get(a.path.as_str()).copied().unwrap_or(0) };
            items.push(Item {
                catalog: ci as u32,
                path: &a.path,
                size: a.size,
                wanted: c.replicas.saturating_add(extra),
                subs,
            });
        }
    }
    let names: Vec<&str> = network.catalogs.keys().map(String::as_str).collect();

    // Candidates of a run of items, flat: item `i` of the run has `cands[ends[i - 1]..ends[i]]`.
    // One allocation per run rather than one per artifact.
    struct Run {
        keys: Vec<u64>,
        ends: Vec<u32>,
        cands: Vec<u32>,
    }
    const RUN: usize = 4096;
    let runs: Vec<Run> = items
        .par_chunks(RUN)
        .map(|chunk| {
            let mut run = Run {
                keys: Vec::with_capacity(chunk.len()),
                ends: Vec::with_capacity(chunk.len()),
                cands: Vec::with_capacity(chunk.len() * (2 + SLACK)),
            };
            let mut top = Vec::new();
            for it in chunk {
                let akey = artifact_key(names[it.catalog as usize], it.path.as_str());
                scorer.best(it.subs, akey, it.wanted as usize + SLACK, &mut top, &mut run.cands);
                run.keys.push(akey);
                run.ends.push(run.cands.len() as u32);
            }
            run
        })
        .collect();
    let candidates = runs.iter().flat_map(|run| {
        run.keys.iter().zip(&run.ends).enumerate().map(move |(i, (&akey, &end))| {
            let start = if i == 0 { 0 } else { run.ends[i - 1] as usize };
            (akey, &run.cands[start..end as usize])
        })
    });

    let mut remaining: Vec<u64> = scorer.relays.iter().map(|r| r.quota.0).collect();
    let mut shares: Vec<Share> =
        scorer.relays.iter().map(|r| Share::new(&r.name, r.quota.0)).collect();
    let mut bound = false;
    let mut catalogs: BTreeMap<String, CatalogPlacements> =
        network.catalogs.keys().map(|n| (n.clone(), CatalogPlacements::new())).collect();
    // One catalog's placements at a time, in path order, made into a map when it ends.
    let mut current: Option<(u32, Vec<(ArtifactPath, Placement)>)> = None;
    for (item, (akey, cands)) in items.iter().zip(candidates) {
        let mut holders = Vec::with_capacity(item.wanted as usize);
        let take =
            |list: &[u32], holders: &mut Vec<u32>, remaining: &mut [u64], bound: &mut bool| {
                for &r in list {
                    if holders.len() == item.wanted as usize {
                        break;
                    }
                    if holders.contains(&r) {
                        continue;
                    }
                    if remaining[r as usize] >= item.size {
                        remaining[r as usize] -= item.size;
                        holders.push(r);
                    } else {
                        *bound = true;
                    }
                }
            };
        take(cands, &mut holders, &mut remaining, &mut bound);
        if holders.len() < item.wanted as usize && cands.len() < item.subs.len() {
            take(&scorer.ranked_all(item.subs, akey), &mut holders, &mut remaining, &mut bound);
        }
        for &r in &holders {
            shares[r as usize].assigned_bytes += item.size;
            shares[r as usize].artifacts += 1;
        }
        // Placements go into one catalog's map at a time, in path order.
        if current.as_ref().is_none_or(|(c, _)| *c != item.catalog) {
            if let Some((c, list)) = current.take() {
                catalogs.insert(names[c as usize].to_owned(), crate::model::dense_map(list));
            }
            current = Some((item.catalog, Vec::new()));
        }
        if let Some((_, list)) = current.as_mut() {
            let placement = Placement { size: item.size, holders, wanted: item.wanted };
            list.push((item.path.clone(), placement));
        }
    }
    if let Some((c, list)) = current.take() {
        catalogs.insert(names[c as usize].to_owned(), crate::model::dense_map(list));
    }
    Assignment { catalogs, relays: shares, bound, extras: extras.clone() }
}

/// The assignment of `network` from `prior`, the assignment of `before`: exactly what
/// [`assign`] gives (a property test checks it), at a cost in proportion to the artifacts
/// that changed when it can, else by [`assign`].
///
/// It can when no quota bound in `prior` or binds now, and the relays, the hot extras and
/// every catalog's name, tags and replicas are unchanged: then each artifact's holders are
/// its best `wanted` subscribers by score, which depend on that artifact alone (rendezvous
/// hashing), so only the added, removed and changed artifacts are placed again. Their
/// catalogs are found by comparing the persistent maps, which skips whatever `network`
/// shares with `before` (all of it but the changed documents, after `load_since`).
pub fn assign_since(
    prior: &Assignment,
    before: &Network,
    network: &Network,
    extras: &Extras,
) -> Assignment {
    since(prior, before, network, extras).unwrap_or_else(|| assign(network, extras))
}

pub(crate) fn since(
    prior: &Assignment,
    before: &Network,
    network: &Network,
    extras: &Extras,
) -> Option<Assignment> {
    let same_catalogs = before.catalogs.len() == network.catalogs.len()
        && before
            .catalogs
            .iter()
            .zip(&network.catalogs)
            .all(|((n1, a), (n2, b))| n1 == n2 && a.tags == b.tags && a.replicas == b.replicas);
    if prior.bound || &prior.extras != extras || before.relays != network.relays || !same_catalogs {
        return None;
    }
    let scorer = Scorer::new(network);
    let mut shares: Vec<Share> =
        prior.relays.iter().map(|s| Share { held: Default::default(), ..s.clone() }).collect();
    let mut catalogs = prior.catalogs.clone();
    let mut top = Vec::new();
    for ((name, old), new) in before.catalogs.iter().zip(network.catalogs.values()) {
        if old.artifacts.ptr_eq(&new.artifacts) {
            continue;
        }
        let map = catalogs.get_mut(name)?;
        let subs = scorer.subs[name.as_str()].as_slice();
        let hot: HashMap<&str, u32> = extras
            .iter()
            .filter(|((cat, _), _)| cat == name)
            .map(|((_, p), n)| (p.as_str(), *n))
            .collect();
        let mut placed = Vec::new();
        for change in old.artifacts.diff(&new.artifacts) {
            use imbl::ordmap::DiffItem;
            let (gone, came) = match change {
                DiffItem::Add(_, a) => (None, Some(a)),
                DiffItem::Remove(_, a) => (Some(a), None),
                DiffItem::Update { old: (_, a), new: (_, b) } => (Some(a), Some(b)),
            };
            if let Some(a) = gone.filter(|a| a.expunged.is_none()) {
                let p = map.remove(a.path.as_str())?;
                for &r in &p.holders {
                    let s = shares.get_mut(r as usize)?;
                    s.assigned_bytes = s.assigned_bytes.checked_sub(p.size)?;
                    s.artifacts = s.artifacts.checked_sub(1)?;
                }
            }
            if let Some(a) = came.filter(|a| a.expunged.is_none()) {
                let wanted =
                    new.replicas.saturating_add(hot.get(a.path.as_str()).copied().unwrap_or(0));
                let mut holders = Vec::with_capacity(wanted as usize);
                let akey = artifact_key(name, a.path.as_str());
                scorer.best(subs, akey, wanted as usize, &mut top, &mut holders);
                placed.push((a.path.clone(), Placement { size: a.size, holders, wanted }));
            }
        }
        for (path, p) in placed {
            for &r in &p.holders {
                let s = shares.get_mut(r as usize)?;
                s.assigned_bytes += p.size;
                s.artifacts += 1;
            }
            map.insert(path, p);
        }
    }
    // Every relay within its quota with each artifact on its best subscribers means the
    // placement pass of `assign` would have found room everywhere, so it gives this table.
    if shares.iter().any(|s| s.assigned_bytes > s.quota) {
        return None;
    }
    Some(Assignment { catalogs, relays: shares, bound: false, extras: extras.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_pinned() {
        // These values are part of the wire contract: every agent version must agree.
        assert_eq!(mix(0), 0);
        // SplitMix64 seeded with 0: its first output is mix(golden gamma).
        assert_eq!(mix(0x9e37_79b9_7f4a_7c15), 0xe220_a839_7b1d_cdaf);
        assert_eq!(relay_key("r1"), relay_key("r1"));
        assert_ne!(relay_key("r1"), relay_key("r2"));
        let s = score(relay_key("r1"), 1.0, artifact_key("c", "a"));
        assert!(s > 0.0 && s.is_finite());
    }

    // ---- Properties of the assignment, on networks built and verified like real ones. ----

    use std::collections::BTreeSet;
    use std::sync::OnceLock;

    use proptest::prelude::*;
    use proptest::test_runner::RngSeed;

    use crate::builder::NetworkBuilder;
    use crate::model::Catalog;
    use crate::raw::{
        ArtifactEntry, CatalogFile, DirectoryFile, DirectoryKind, RelayFile, ReleaseFile,
        Sha256 as Digest256,
    };
    use crate::safe_path::ArtifactPath;
    use crate::units::ByteSize;
    use crate::{TrustAnchor, TrustState};

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    /// Few cases, a fixed seed (the spread bound is statistical; a fixed seed keeps the run
    /// reproducible) and no regression files written into the source tree.
    fn config(cases: u32) -> ProptestConfig {
        let mut c = ProptestConfig::with_cases(cases);
        c.rng_seed = RngSeed::Fixed(0x0d1_5eed);
        c.failure_persistence = None;
        c
    }

    /// A signed network from the builder, verified by `load`: catalog `c` (tag `t`) with
    /// `artifacts` (path, size) split into release files, one directory, and `relays`
    /// (name, quota). Quotas must be whole MiB below 1 GiB or whole GiB, which the human-unit
    /// form written to TOML keeps exact.
    fn build(relays: &[(String, u64)], artifacts: &[(String, u64)], replicas: u32) -> Network {
        let mut b = NetworkBuilder::new().unwrap();
        b.catalogs.insert(
            "c".into(),
            CatalogFile {
                serial: 1,
                name: "c".into(),
                description: "property tests".into(),
                tags: vec!["t".into()],
                origins: vec!["https://origin.example/".into()],
                replicas,
                import: None,
                artifacts: vec![],
            },
        );
        for (i, chunk) in artifacts.chunks(5000).enumerate() {
            let artifacts = chunk
                .iter()
                .map(|(p, size)| ArtifactEntry {
                    path: ArtifactPath::new(p).unwrap(),
                    size: *size,
                    sha256: Digest256(Sha256::digest(p.as_bytes()).into()),
                    published: None,
                    expunged: None,
                })
                .collect();
            b.releases.insert(
                ("c".into(), format!("r{i}")),
                ReleaseFile { serial: 1, catalog: "c".into(), artifacts },
            );
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
                catalogs: vec!["c".into()],
                links: vec![],
                references: vec![],
            },
        );
        // Inserted in reverse to show that input order does not matter.
        for (i, (name, quota)) in relays.iter().enumerate().rev() {
            b.relays.insert(
                name.clone(),
                RelayFile {
                    serial: 1,
                    name: name.clone(),
                    url: format!("https://{name}.example/"),
                    region: "eu".into(),
                    contact: "ops@example.org".into(),
                    quota: ByteSize(*quota),
                    bandwidth: None,
                    directories: vec!["d".into()],
                    // Half subscribe by name, half by tag: both must count.
                    catalogs: if i % 2 == 0 { vec!["c".into()] } else { vec![] },
                    tags: if i % 2 == 0 { vec![] } else { vec!["t".into()] },
                    location: None,
                    countries: vec![],
                    exclude_countries: vec![],
                },
            );
        }
        let tree = b.tree().unwrap();
        let net = crate::load(
            &tree,
            &TrustAnchor::default(),
            &TrustState::default(),
            time::OffsetDateTime::now_utc(),
        )
        .unwrap()
        .network;
        for (name, quota) in relays {
            assert_eq!(
                net.relays[name].quota.0, *quota,
                "quota of {name} must survive the TOML round trip"
            );
        }
        net
    }

    /// Relays with the catalog of a cached, already verified network (building big catalogs
    /// once keeps the cases fast); `replicas` is set on the copy.
    fn with_catalog(relays: &[(String, u64)], catalog: &Catalog, replicas: u32) -> Network {
        let mut net = build(relays, &[], replicas);
        let mut c = catalog.clone();
        c.replicas = replicas;
        net.catalogs.insert("c".into(), c);
        net
    }

    fn cached_catalog(
        cell: &'static OnceLock<Catalog>,
        n: usize,
        size: fn(usize) -> u64,
    ) -> &'static Catalog {
        cell.get_or_init(|| {
            let artifacts: Vec<(String, u64)> =
                (0..n).map(|i| (format!("pkg/{}/a-{i}.bin", i % 97), size(i))).collect();
            let net = build(&[("seed".into(), GIB)], &artifacts, 1);
            let c = net.catalogs["c"].clone();
            assert_eq!(c.artifacts.len(), n);
            c
        })
    }

    fn small_catalog() -> &'static Catalog {
        static C: OnceLock<Catalog> = OnceLock::new();
        cached_catalog(&C, 2000, |_| 1024)
    }

    fn big_catalog() -> &'static Catalog {
        static C: OnceLock<Catalog> = OnceLock::new();
        cached_catalog(&C, 40_000, |_| 1024)
    }

    fn varied_catalog() -> &'static Catalog {
        static C: OnceLock<Catalog> = OnceLock::new();
        // Sizes from 1 KiB to about 2 MiB.
        cached_catalog(&C, 1500, |i| 1024 + (mix(i as u64) % (2 * MIB)))
    }

    /// Names with quotas in whole GiB (ample for the 1 KiB artifacts).
    fn relays_gib(quotas: &[u64]) -> Vec<(String, u64)> {
        quotas.iter().enumerate().map(|(i, q)| (format!("relay-{i:02}"), q * GIB)).collect()
    }

    /// The table by names: (catalog, path) -> holder names, best first.
    fn by_name(a: &Assignment) -> BTreeMap<(String, String), Vec<String>> {
        a.iter()
            .map(|p| {
                (
                    (p.catalog.to_owned(), p.path.to_owned()),
                    p.placement
                        .holders
                        .iter()
                        .map(|&r| a.relays[r as usize].name.clone())
                        .collect(),
                )
            })
            .collect()
    }

    fn holder_sets(a: &Assignment) -> BTreeMap<(String, String), BTreeSet<String>> {
        by_name(a).into_iter().map(|(k, v)| (k, v.into_iter().collect())).collect()
    }

    #[test]
    fn every_placement_is_found_by_its_name_and_nothing_else() {
        let net = with_catalog(&relays_gib(&[1, 2, 3]), varied_catalog(), 2);
        let a = assign(&net, &Extras::new());
        assert!(!a.is_empty());
        assert_eq!(a.len(), net.catalogs["c"].live().count());
        for p in a.iter() {
            assert!(
                std::ptr::eq(a.placement(p.catalog, p.path).unwrap(), p.placement),
                "{}",
                p.path
            );
        }
        let first = a.iter().next().unwrap();
        for (catalog, path) in [("a", first.path), ("zz", first.path), (first.catalog, "no/such")] {
            assert!(a.placement(catalog, path).is_none(), "{catalog}/{path}");
        }
        // A share lists exactly the placements that name its relay.
        for (i, share) in a.relays.iter().enumerate() {
            let listed: Vec<&str> = a.artifacts_of(share).map(|p| p.path).collect();
            let holding: Vec<&str> = a
                .iter()
                .filter(|p| p.placement.holders.contains(&(i as u32)))
                .map(|p| p.path)
                .collect();
            assert_eq!(listed, holding, "{}", share.name);
            assert_eq!(listed.len(), share.artifacts);
        }
    }

    /// The assignment as written before the scoring loop was optimised: every score computed
    /// and sorted. The optimised [`assign`] must give exactly this table.
    fn assign_reference(network: &Network, extras: &Extras) -> Assignment {
        let relays: Vec<_> = network.relays.values().collect();
        let keys: Vec<u64> = relays.iter().map(|r| relay_key(&r.name)).collect();
        let weights: Vec<f64> = relays.iter().map(|r| r.quota.0 as f64).collect();

        struct Item<'a> {
            catalog: &'a str,
            path: &'a str,
            size: u64,
            key: u64,
            wanted: u32,
            subs: &'a [u32],
        }
        let subs_by_catalog: BTreeMap<&str, Vec<u32>> = network
            .catalogs
            .values()
            .map(|c| {
                (
                    c.name.as_str(),
                    relays
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.subscribes(c))
                        .map(|(i, _)| i as u32)
                        .collect(),
                )
            })
            .collect();
        let mut items = Vec::new();
        for c in network.catalogs.values() {
            let subs = subs_by_catalog[c.name.as_str()].as_slice();
            for a in c.live() {
                let path = a.path.as_str();
                let extra = extras.get(&(c.name.clone(), path.to_owned())).copied().unwrap_or(0);
                items.push(Item {
                    catalog: &c.name,
                    path,
                    size: a.size,
                    key: artifact_key(&c.name, path),
                    wanted: c.replicas.saturating_add(extra),
                    subs,
                });
            }
        }

        let ranked = |item: &Item<'_>, k: usize| -> Vec<u32> {
            let mut scored: Vec<(f64, u32)> = item
                .subs
                .iter()
                .map(|&r| (score(keys[r as usize], weights[r as usize], item.key), r))
                .collect();
            let by_rank = |a: &(f64, u32), b: &(f64, u32)| {
                b.0.total_cmp(&a.0)
                    .then_with(|| relays[a.1 as usize].name.cmp(&relays[b.1 as usize].name))
            };
            if k < scored.len() {
                scored.select_nth_unstable_by(k, by_rank);
                scored.truncate(k);
            }
            scored.sort_unstable_by(by_rank);
            scored.into_iter().map(|(_, r)| r).collect()
        };
        let candidates: Vec<Vec<u32>> =
            items.par_iter().map(|it| ranked(it, it.wanted as usize + SLACK)).collect();

        let mut remaining: Vec<u64> = relays.iter().map(|r| r.quota.0).collect();
        let mut shares: Vec<Share> =
            relays.iter().map(|r| Share::new(&r.name, r.quota.0)).collect();
        let mut catalogs: BTreeMap<String, CatalogPlacements> = BTreeMap::new();
        for (item, cands) in items.iter().zip(candidates) {
            let mut holders = Vec::with_capacity(item.wanted as usize);
            let take = |list: &[u32], holders: &mut Vec<u32>, remaining: &mut [u64]| {
                for &r in list {
                    if holders.len() == item.wanted as usize {
                        break;
                    }
                    if remaining[r as usize] >= item.size && !holders.contains(&r) {
                        remaining[r as usize] -= item.size;
                        holders.push(r);
                    }
                }
            };
            take(&cands, &mut holders, &mut remaining);
            if holders.len() < item.wanted as usize && cands.len() < item.subs.len() {
                take(&ranked(item, item.subs.len()), &mut holders, &mut remaining);
            }
            for &r in &holders {
                shares[r as usize].assigned_bytes += item.size;
                shares[r as usize].artifacts += 1;
            }
            catalogs.entry(item.catalog.to_owned()).or_default().insert(
                ArtifactPath::new(item.path).unwrap(),
                Placement { size: item.size, holders, wanted: item.wanted },
            );
        }
        Assignment { catalogs, relays: shares, bound: false, extras: extras.clone() }
    }

    proptest! {
        #![proptest_config(config(8))]

        #[test]
        fn prop_optimised_scoring_gives_the_reference_table(
            quotas_mib in proptest::collection::vec(1u64..=4096, 1..40),
            replicas in 1u32..=4,
            varied in any::<bool>(),
            hot in proptest::collection::vec((0usize..1500, 1u32..=5), 0..20),
        ) {
            // Small quotas over the varied catalog make the quota bind (the fallback to every
            // score runs); large ones over the small catalog leave the best few as the answer.
            let relays: Vec<(String, u64)> = quotas_mib
                .iter()
                .enumerate()
                .map(|(i, q)| (format!("relay-{i:02}"), if varied { (q % 64 + 1) * MIB } else { (q % 8 + 1) * GIB }))
                .collect();
            let catalog = if varied { varied_catalog() } else { small_catalog() };
            let net = with_catalog(&relays, catalog, replicas);
            let paths: Vec<&ArtifactPath> = catalog.artifacts.keys().collect();
            let extras: Extras = hot
                .iter()
                .map(|(i, n)| (("c".to_owned(), paths[i % paths.len()].to_string()), *n))
                .collect();
            let (fast, slow) = (assign(&net, &extras), assign_reference(&net, &extras));
            prop_assert_eq!(by_name(&fast), by_name(&slow));
            let wanted = |t: &Assignment| t.iter().map(|p| p.placement.wanted).collect::<Vec<_>>();
            prop_assert_eq!(wanted(&fast), wanted(&slow));
            let shares = |t: &Assignment| t.relays.iter().map(|s| (s.name.clone(), s.assigned_bytes, s.artifacts, t.artifacts_of(s).map(|p| p.path.to_owned()).collect::<Vec<_>>())).collect::<Vec<_>>();
            prop_assert_eq!(shares(&fast), shares(&slow));
        }

        #[test]
        fn prop_deterministic(quotas in proptest::collection::vec(1u64..=8, 1..8), replicas in 1u32..=3) {
            let relays = relays_gib(&quotas);
            // Two networks with different keys (builders generate fresh ones) and relays
            // given in opposite orders.
            let a = with_catalog(&relays, small_catalog(), replicas);
            let mut reversed = relays.clone();
            reversed.reverse();
            let b = with_catalog(&reversed, small_catalog(), replicas);
            let (ta, tb) = (assign(&a, &Extras::new()), assign(&b, &Extras::new()));
            prop_assert_eq!(by_name(&ta), by_name(&tb));
            let shares = |t: &Assignment| t.relays.iter().map(|s| (s.name.clone(), s.assigned_bytes, s.artifacts)).collect::<Vec<_>>();
            prop_assert_eq!(shares(&ta), shares(&tb));
            // And the same network twice gives the same table.
            prop_assert_eq!(by_name(&ta), by_name(&assign(&a, &Extras::new())));
            for p in ta.iter() {
                prop_assert_eq!(p.placement.holders.len(), (replicas as usize).min(relays.len()));
            }
        }

        #[test]
        fn prop_spread_follows_weights(quotas in proptest::collection::vec(1u64..=4, 5..=8)) {
            let relays = relays_gib(&quotas);
            let net = with_catalog(&relays, big_catalog(), 1);
            let table = assign(&net, &Extras::new());
            let total_weight: u64 = quotas.iter().sum();
            let n = table.len() as f64;
            for (share, q) in table.relays.iter().zip(&quotas) {
                let expected = *q as f64 / total_weight as f64;
                let got = share.artifacts as f64 / n;
                prop_assert!((got - expected).abs() <= 0.10 * expected,
                    "{} with weight {}/{}: share {:.4}, expected {:.4} (+-10%)", share.name, q, total_weight, got, expected);
            }
        }

        #[test]
        fn prop_adding_a_relay_moves_only_what_it_takes(quotas in proptest::collection::vec(1u64..=8, 1..7), new_quota in 1u64..=8, replicas in 1u32..=3) {
            let relays = relays_gib(&quotas);
            let mut more = relays.clone();
            more.push(("newcomer".into(), new_quota * GIB));
            let before = holder_sets(&assign(&with_catalog(&relays, small_catalog(), replicas), &Extras::new()));
            let after = holder_sets(&assign(&with_catalog(&more, small_catalog(), replicas), &Extras::new()));
            let mut taken = 0;
            for (k, old) in &before {
                let new = &after[k];
                let gained: Vec<&String> = new.difference(old).collect();
                prop_assert!(gained.iter().all(|g| *g == "newcomer"), "{k:?}: {old:?} -> {new:?}");
                if new.contains("newcomer") {
                    taken += 1;
                } else {
                    prop_assert_eq!(new, old, "{:?} moved without going to the new relay", k);
                }
            }
            prop_assert!(taken > 0, "the new relay took nothing");
        }

        #[test]
        fn prop_removing_a_relay_moves_only_what_it_held(quotas in proptest::collection::vec(1u64..=8, 2..8), gone in any::<proptest::sample::Index>(), replicas in 1u32..=3) {
            let relays = relays_gib(&quotas);
            let gone = gone.index(relays.len());
            let gone_name = relays[gone].0.clone();
            let mut fewer = relays.clone();
            fewer.remove(gone);
            let before = holder_sets(&assign(&with_catalog(&relays, small_catalog(), replicas), &Extras::new()));
            let after = holder_sets(&assign(&with_catalog(&fewer, small_catalog(), replicas), &Extras::new()));
            for (k, old) in &before {
                let new = &after[k];
                let lost: Vec<&String> = old.difference(new).collect();
                prop_assert!(lost.iter().all(|l| **l == gone_name), "{k:?}: {old:?} -> {new:?}");
                if !old.contains(&gone_name) {
                    prop_assert_eq!(new, old, "{:?} moved though {} did not hold it", k, gone_name);
                }
            }
        }

        #[test]
        fn prop_quota_is_never_exceeded(quotas_mib in proptest::collection::vec(1u64..=64, 1..8), replicas in 1u32..=3) {
            let relays: Vec<(String, u64)> = quotas_mib.iter().enumerate().map(|(i, q)| (format!("relay-{i:02}"), q * MIB)).collect();
            let net = with_catalog(&relays, varied_catalog(), replicas);
            let table = assign(&net, &Extras::new());
            let mut bytes = vec![0u64; table.relays.len()];
            prop_assert!(table.bound, "the quota binds here");
            for placed in table.iter() {
                let p = placed.placement;
                prop_assert!(p.holders.len() <= p.wanted as usize);
                let distinct: BTreeSet<u32> = p.holders.iter().copied().collect();
                prop_assert_eq!(distinct.len(), p.holders.len(), "a relay holds {} twice", placed.path);
                for &r in &p.holders {
                    bytes[r as usize] += p.size;
                }
            }
            let total: u64 = varied_catalog().live_bytes() * u64::from(replicas);
            let quota_total: u64 = relays.iter().map(|r| r.1).sum();
            prop_assert!(total > quota_total, "the quota must bind for this test to mean something");
            for (s, b) in table.relays.iter().zip(&bytes) {
                prop_assert_eq!(s.assigned_bytes, *b, "{}: share bytes disagree with placements", &s.name);
                prop_assert!(s.assigned_bytes <= s.quota, "{} holds {} bytes over its quota {}", s.name, s.assigned_bytes, s.quota);
                // Trimming leaves no big gap: nothing left unplaced would still fit.
                let smallest_unplaced = table.iter().map(|p| p.placement).filter(|p| p.holders.len() < p.wanted as usize && !p.holders.iter().any(|&h| table.relays[h as usize].name == s.name)).map(|p| p.size).min();
                if let Some(min) = smallest_unplaced {
                    prop_assert!(s.quota - s.assigned_bytes < min, "{} has {} bytes free but left an artifact of {} unplaced", s.name, s.quota - s.assigned_bytes, min);
                }
            }
        }
    }
}
