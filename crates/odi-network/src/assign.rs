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

/// One placed artifact.
#[derive(Debug, Clone)]
pub struct Placement {
    /// Catalog name.
    pub catalog: String,
    /// Artifact path.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Holders as indices into [`Assignment::relays`], best first.
    pub holders: Vec<u32>,
    /// Copies wanted (replicas plus hot extras); more than `holders.len()` when quota ran out.
    pub wanted: u32,
}

/// A relay's share.
#[derive(Debug, Clone)]
pub struct Share {
    /// Relay name.
    pub name: String,
    /// Its quota.
    pub quota: u64,
    /// Bytes assigned.
    pub assigned_bytes: u64,
    /// Indices into [`Assignment::placements`].
    pub artifacts: Vec<u32>,
}

/// The whole assignment table at one commit.
#[derive(Debug, Clone, Default)]
pub struct Assignment {
    /// Every live artifact, in placement order.
    pub placements: Vec<Placement>,
    /// Every relay, by name order.
    pub relays: Vec<Share>,
    index: HashMap<(String, String), u32>,
}

impl Assignment {
    /// The placement of one artifact.
    pub fn placement(&self, catalog: &str, path: &str) -> Option<&Placement> {
        self.index.get(&(catalog.to_owned(), path.to_owned())).map(|&i| &self.placements[i as usize])
    }

    /// Names of the relays that hold an artifact, best first.
    pub fn holders(&self, catalog: &str, path: &str) -> Vec<&str> {
        self.placement(catalog, path).map(|p| p.holders.iter().map(|&r| self.relays[r as usize].name.as_str()).collect()).unwrap_or_default()
    }

    /// A relay's share.
    pub fn share(&self, relay: &str) -> Option<&Share> {
        self.relays.iter().find(|s| s.name == relay)
    }

    /// The artifacts of a relay's share.
    pub fn artifacts_of<'a>(&'a self, share: &'a Share) -> impl Iterator<Item = &'a Placement> + 'a {
        share.artifacts.iter().map(|&i| &self.placements[i as usize])
    }
}

/// Hot artifacts that get extra copies: (catalog, path) to extra replicas.
pub type Extras = BTreeMap<(String, String), u32>;

/// Computes the assignment for `network`.
pub fn assign(network: &Network, extras: &Extras) -> Assignment {
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
        .map(|c| (c.name.as_str(), relays.iter().enumerate().filter(|(_, r)| r.subscribes(c)).map(|(i, _)| i as u32).collect()))
        .collect();
    let mut items = Vec::new();
    for c in network.catalogs.values() {
        let subs = subs_by_catalog[c.name.as_str()].as_slice();
        for a in c.live() {
            let path = a.path.as_str();
            let extra = extras.get(&(c.name.clone(), path.to_owned())).copied().unwrap_or(0);
            items.push(Item { catalog: &c.name, path, size: a.size, key: artifact_key(&c.name, path), wanted: c.replicas.saturating_add(extra), subs });
        }
    }

    let ranked = |item: &Item<'_>, k: usize| -> Vec<u32> {
        let mut scored: Vec<(f64, u32)> = item.subs.iter().map(|&r| (score(keys[r as usize], weights[r as usize], item.key), r)).collect();
        let by_rank = |a: &(f64, u32), b: &(f64, u32)| b.0.total_cmp(&a.0).then_with(|| relays[a.1 as usize].name.cmp(&relays[b.1 as usize].name));
        if k < scored.len() {
            scored.select_nth_unstable_by(k, by_rank);
            scored.truncate(k);
        }
        scored.sort_unstable_by(by_rank);
        scored.into_iter().map(|(_, r)| r).collect()
    };
    let candidates: Vec<Vec<u32>> = items.par_iter().map(|it| ranked(it, it.wanted as usize + SLACK)).collect();

    let mut remaining: Vec<u64> = relays.iter().map(|r| r.quota.0).collect();
    let mut shares: Vec<Share> = relays.iter().map(|r| Share { name: r.name.clone(), quota: r.quota.0, assigned_bytes: 0, artifacts: Vec::new() }).collect();
    let mut placements = Vec::with_capacity(items.len());
    let mut index = HashMap::with_capacity(items.len());
    for (i, (item, cands)) in items.iter().zip(candidates).enumerate() {
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
            shares[r as usize].artifacts.push(i as u32);
        }
        index.insert((item.catalog.to_owned(), item.path.to_owned()), i as u32);
        placements.push(Placement { catalog: item.catalog.to_owned(), path: item.path.to_owned(), size: item.size, holders, wanted: item.wanted });
    }
    Assignment { placements, relays: shares, index }
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
}
