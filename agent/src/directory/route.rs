//! The routing table: for every live artifact of the directory's catalogs, the healthy relays
//! that really hold it (per their last passing probe, with the same SHA-256 as the applied
//! commit), ranked, grouped by client region, with every header value precomputed.
//!
//! It is rebuilt off the request path (after each probe round and each new view) and swapped
//! atomically, so a request does one hash lookup on its raw path, draws one random number and
//! copies a few ready-made header values: no parsing, no formatting, no locks.

use std::collections::HashMap;
use std::sync::Arc;

use http::header::{HeaderMap, HeaderName, HeaderValue, CACHE_CONTROL, LINK, LOCATION};
use http::{Response, StatusCode};
use odi_network::model::Network;
use time::OffsetDateTime;
use url::Url;

use super::geo::{self, Code, Geo, Place, Rank, Steer};
use super::metalink::{self, MetaFile, MetaUrl};
use super::region::{RegionId, RegionMap};
use super::stats::{Counter, Stats};
use crate::http::file::{DIGEST, REPR_DIGEST};
use crate::http::{response, Body, PlainResponse};
use crate::node::View;

/// What a relay proved it holds at its last passing probe: (catalog, path) to SHA-256.
pub type Held = HashMap<(String, String), [u8; 32]>;

/// Healthy relays: what each holds, and the address families it answered its probe on.
pub type Healthy = HashMap<String, (Arc<Held>, Serves)>;

/// What a relay offers a client, or what a client needs of a relay, as a set: HTTPS, and
/// the address families (a relay is offered only over a family it answered its probe on; a
/// client needs its own). A candidate fits a client when its set covers the client's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Serves(u8);

impl Serves {
    /// Nothing.
    pub const NONE: Serves = Serves(0);
    /// HTTPS.
    pub const HTTPS: Serves = Serves(1);
    /// IPv4.
    pub const V4: Serves = Serves(2);
    /// IPv6.
    pub const V6: Serves = Serves(4);
    /// Both families.
    pub const DUAL: Serves = Serves(2 | 4);
    /// Everything (the meet of no candidates).
    const ALL: Serves = Serves(1 | 2 | 4);

    /// Both sets.
    #[must_use]
    pub const fn with(self, other: Serves) -> Serves {
        Serves(self.0 | other.0)
    }

    /// Every item of `need` is in `self`.
    #[inline]
    pub const fn covers(self, need: Serves) -> bool {
        self.0 & need.0 == need.0
    }

    /// What a client needs: HTTPS when it came over HTTPS, and the family of its address (an
    /// IPv4-mapped IPv6 address is IPv4).
    #[inline]
    pub fn client(secure: bool, ip: std::net::IpAddr) -> Serves {
        let family = if ip.to_canonical().is_ipv4() { Serves::V4 } else { Serves::V6 };
        if secure {
            family.with(Serves::HTTPS)
        } else {
            family
        }
    }

    /// The first thing of `need` that `self` lacks, in words: why a candidate is refused.
    pub fn lack(self, need: Serves) -> Option<&'static str> {
        if need.covers(Serves::HTTPS) && !self.covers(Serves::HTTPS) {
            Some("serves plain HTTP and the client came over HTTPS")
        } else if need.covers(Serves::V6) && !self.covers(Serves::V6) {
            Some("did not answer its last probe over IPv6, and the client came over IPv6")
        } else if need.covers(Serves::V4) && !self.covers(Serves::V4) {
            Some("did not answer its last probe over IPv4, and the client came over IPv4")
        } else {
            None
        }
    }

    /// The families, as `IPv4`, `IPv6` or `IPv4, IPv6`.
    pub fn families(self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.covers(Serves::V4) {
            v.push("IPv4");
        }
        if self.covers(Serves::V6) {
            v.push("IPv6");
        }
        v
    }
}

/// A relay that may serve an artifact.
#[derive(Debug)]
pub struct Candidate {
    /// The relay's name in the network; also the key of its redirect counter.
    pub relay: Box<str>,
    /// Relay region as written in its file.
    pub region: Box<str>,
    /// Where it serves this artifact.
    pub url: Box<str>,
    /// Weight (its quota).
    pub weight: f64,
    /// HTTPS or not, and the families it answered its last probe on.
    pub serves: Serves,
    /// Where it is (from its relay file, else the directory's databases).
    pub place: Place,
    /// Serves only clients of these countries; empty: everyone.
    pub only: Box<[Code]>,
    /// Never serves clients of these countries.
    pub never: Box<[Code]>,
    location: HeaderValue,
    counter: Arc<Counter>,
}

/// Candidates as seen from one client region.
#[derive(Debug)]
pub struct Group {
    /// The client region this order is for; `None` for clients of no (or another) region.
    region: Option<RegionId>,
    /// Candidate indices, best first: same-region relays, then the others.
    order: Vec<u16>,
    /// Cumulative weights of the first `cum.len()` entries of `order`: the ones drawn from.
    cum: Vec<f64>,
    /// `Link: rel=duplicate` value of each entry of `order`, with `pri` its position.
    links: Vec<HeaderValue>,
}

/// One routable artifact.
#[derive(Debug)]
pub struct Entry {
    /// Catalog name; with `path`, how the artifact is looked up in the view's network.
    pub catalog: Box<str>,
    /// Path in the catalog.
    pub path: Box<str>,
    /// From the applied commit; every candidate's last passing probe listed these bytes.
    pub sha256: [u8; 32],
    /// Exact length in bytes from the catalog; the Metalink `<size>`.
    pub size: u64,
    /// When the artifact was published, for the Metalink `<published>`; `None` when not given.
    pub published: Option<OffsetDateTime>,
    /// Healthy relays that hold it, in assignment (HRW) order.
    pub candidates: Vec<Candidate>,
    /// This artifact's counter in [`Stats`], kept across rebuilds; one hit per GET routed.
    pub counter: Arc<Counter>,
    /// What every candidate offers: a client that needs no more is drawn for without
    /// looking at each candidate (the common case); others draw among fewer.
    common: Serves,
    groups: Vec<Group>,
    digest: HeaderValue,
    repr_digest: HeaderValue,
    describedby: HeaderValue,
    own_url: Box<str>,
}

/// The routing table for one view and one set of probe results.
#[derive(Debug, Default)]
pub struct Table {
    /// The view it was built from; requests use the table only while that view is applied.
    pub view: Option<Arc<View>>,
    entries: Vec<Entry>,
    /// Raw request paths (`/r/<catalog>/<path>` as a client sends it, and the decoded form
    /// when different) to entries.
    index: HashMap<Box<str>, u32>,
    /// This directory's region (for the Metalink `location` of its own URL).
    own_region: Option<Box<str>>,
}

/// What to build a table from.
#[derive(Debug)]
pub struct BuildInput<'a> {
    /// The applied view.
    pub view: &'a Arc<View>,
    /// This directory's name.
    pub me: &'a str,
    /// Healthy relays, what they hold, and the families they answered on.
    pub healthy: &'a Healthy,
    /// Turns relay regions into the ids that candidates are grouped by for client regions.
    pub regions: &'a RegionMap,
    /// Hands out the artifact and relay counters, which outlive any one table.
    pub stats: &'a Stats,
    /// Places relays whose files do not say where they are.
    pub geo: &'a Geo,
}

/// A weight a draw can use: a zero, negative or absurd one counts as nothing.
fn usable(w: f64) -> f64 {
    if w.is_finite() && w > 0.0 {
        w
    } else {
        0.0
    }
}

fn header(s: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(s).ok()
}

/// A region code fit for `geo=` and Metalink `location` (ISO 3166-1 alpha-2 in the RFCs).
pub fn geo(region: &str) -> Option<String> {
    (region.len() == 2 && region.bytes().all(|b| b.is_ascii_alphabetic()))
        .then(|| region.to_ascii_lowercase())
}

pub use odi_network::model::artifact_url;

/// The path a client sends for an artifact, percent-encoded as a URL library would.
fn raw_path(catalog: &str, path: &str) -> Option<String> {
    Url::parse("http://x/")
        .ok()?
        .join(&format!("r/{catalog}/{path}"))
        .ok()
        .map(|u| u.path().to_owned())
}

impl Table {
    /// Builds the table.
    pub fn build(input: &BuildInput<'_>) -> Table {
        let view = input.view;
        let net: &Network = &view.network;
        let Some(me) = net.directories.get(input.me) else {
            return Table { view: Some(view.clone()), ..Table::default() };
        };
        // Invert the relays' holdings once: artifact -> relays holding exactly the bytes of
        // this commit. A relay that lags (older commit) or never got the artifact is simply
        // absent here, so it can never be sent a request for it.
        let mut holders: HashMap<(&str, &str), Vec<&str>> = HashMap::new();
        for (name, (held, _)) in input.healthy {
            for ((c, p), sha) in held.iter() {
                if !me.catalogs.iter().any(|mc| mc == c) {
                    continue;
                }
                if net.artifact(c, p).is_some_and(|a| a.expunged.is_none() && a.sha256.0 == *sha) {
                    holders.entry((c.as_str(), p.as_str())).or_default().push(name.as_str());
                }
            }
        }
        let mut relay_counters: HashMap<&str, Arc<Counter>> = HashMap::new();
        let places: HashMap<&str, Place> = net
            .relays
            .values()
            .map(|r| (r.name.as_str(), geo::relay_place(input.geo, r)))
            .collect();
        let codes =
            |v: &[String]| -> Box<[Code]> { v.iter().filter_map(|c| geo::code(c)).collect() };
        let mut entries = Vec::new();
        let mut index = HashMap::new();
        for catalog in me.catalogs.iter().filter_map(|c| net.catalogs.get(c)) {
            for a in catalog.live() {
                let path = a.path.as_str();
                let Some(raw) = raw_path(&catalog.name, path) else { continue };
                let mut names: Vec<&str> =
                    holders.remove(&(catalog.name.as_str(), path)).unwrap_or_default();
                let hrw = view.assignment.holders(&catalog.name, path);
                let rank = |n: &str| hrw.iter().position(|h| *h == n).unwrap_or(usize::MAX);
                names.sort_by(|x, y| rank(x).cmp(&rank(y)).then_with(|| x.cmp(y)));
                names.truncate(u16::MAX as usize);
                let mut candidates = Vec::with_capacity(names.len());
                for n in names {
                    let Some(relay) = net.relays.get(n) else { continue };
                    let Some(url) = artifact_url(&relay.url, &catalog.name, path) else { continue };
                    let Some(location) = header(url.as_str()) else { continue };
                    let counter =
                        relay_counters.entry(n).or_insert_with(|| input.stats.relay(n)).clone();
                    candidates.push(Candidate {
                        relay: n.into(),
                        region: relay.region.as_str().into(),
                        url: url.as_str().into(),
                        weight: relay.quota.0 as f64,
                        serves: input.healthy.get(n).map_or(Serves::NONE, |h| h.1).with(
                            if url.scheme() == "https" { Serves::HTTPS } else { Serves::NONE },
                        ),
                        place: places.get(n).copied().unwrap_or_default(),
                        only: codes(&relay.countries),
                        never: codes(&relay.exclude_countries),
                        location,
                        counter,
                    });
                }
                let groups = groups(&candidates, input.regions);
                let common = candidates.iter().fold(Serves::ALL, |m, c| Serves(m.0 & c.serves.0));
                let own = artifact_url(&me.url, &catalog.name, path)
                    .map(|u| u.to_string())
                    .unwrap_or_else(|| raw.clone());
                let b64 =
                    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, a.sha256.0);
                let (Some(digest), Some(repr_digest), Some(describedby)) = (
                    header(&format!("SHA-256={b64}")),
                    header(&format!("sha-256=:{b64}:")),
                    header(&format!(
                        "<{own}{}>; rel=describedby; type=\"{}\"",
                        metalink_suffix(),
                        metalink::CONTENT_TYPE
                    )),
                ) else {
                    continue;
                };
                let i = entries.len() as u32;
                let decoded = format!("/r/{}/{}", catalog.name, path);
                if decoded != raw {
                    index.insert(decoded.into_boxed_str(), i);
                }
                index.insert(raw.into_boxed_str(), i);
                entries.push(Entry {
                    catalog: catalog.name.as_str().into(),
                    path: path.into(),
                    sha256: a.sha256.0,
                    size: a.size,
                    published: a.published,
                    candidates,
                    counter: input.stats.artifact(&catalog.name, path),
                    common,
                    groups,
                    digest,
                    repr_digest,
                    describedby,
                    own_url: own.into_boxed_str(),
                });
            }
        }
        Table {
            view: Some(view.clone()),
            entries,
            index,
            own_region: Some(me.region.as_str().into()),
        }
    }

    /// The entry for a raw request path (`/r/<catalog>/<path>`, without `.meta4`).
    #[inline]
    pub fn get(&self, raw_path: &str) -> Option<&Entry> {
        self.index.get(raw_path).map(|&i| &self.entries[i as usize])
    }

    /// Every live artifact of this directory's catalogs; `candidates` is empty when no
    /// healthy relay holds one.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The Metalink of an entry for a client ranked by the databases (see
    /// [`Entry::geo_ranking`]): its relays in that order, then the directory itself.
    pub fn geo_metalink(
        &self,
        e: &Entry,
        ranking: &[(usize, Rank, Option<f64>)],
        pieces: Option<&super::pieces::Pieces>,
    ) -> String {
        let mut urls: Vec<MetaUrl<'_>> = ranking
            .iter()
            .map(|(i, _, _)| &e.candidates[*i])
            .map(|c| MetaUrl {
                url: &c.url,
                location: c.place.country.as_ref().and_then(|k| std::str::from_utf8(k).ok()),
            })
            .collect();
        urls.push(MetaUrl { url: &e.own_url, location: self.own_region.as_deref() });
        self.render_metalink(e, urls, pieces)
    }

    fn render_metalink(
        &self,
        e: &Entry,
        urls: Vec<MetaUrl<'_>>,
        pieces: Option<&super::pieces::Pieces>,
    ) -> String {
        let name = e.path.rsplit('/').next().unwrap_or(&e.path);
        metalink::render(&MetaFile {
            name,
            pieces,
            size: e.size,
            sha256: &e.sha256,
            published: e
                .published
                .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
            urls,
        })
    }

    /// Renders the Metalink of an entry for a client of `region`: its ranked relays, then the
    /// directory itself.
    /// `need`: what the client needs of a relay (see [`Serves::client`]); only relays that
    /// offer it are listed.
    pub fn metalink(
        &self,
        e: &Entry,
        region: Option<RegionId>,
        need: Serves,
        pieces: Option<&super::pieces::Pieces>,
    ) -> String {
        let g = e.group(region);
        let mut urls: Vec<MetaUrl<'_>> = g
            .map(|g| {
                g.order
                    .iter()
                    .map(|&i| &e.candidates[i as usize])
                    .filter(|c| c.serves.covers(need))
                    .map(|c| MetaUrl { url: &c.url, location: Some(&c.region) })
                    .collect()
            })
            .unwrap_or_default();
        urls.push(MetaUrl { url: &e.own_url, location: self.own_region.as_deref() });
        self.render_metalink(e, urls, pieces)
    }
}

fn metalink_suffix() -> &'static str {
    crate::artifact::path::META4_SUFFIX
}

/// The groups of an entry: first the one for clients of no candidate's region (all relays,
/// drawn by weight), then one per region that has candidates.
fn groups(cands: &[Candidate], regions: &RegionMap) -> Vec<Group> {
    if cands.is_empty() {
        return Vec::new();
    }
    let ids: Vec<Option<RegionId>> = cands.iter().map(|c| regions.id(&c.region)).collect();
    let all: Vec<u16> = (0..cands.len() as u16).collect();
    let mut out = vec![group(None, cands, all.clone(), cands.len())];
    let mut seen: Vec<RegionId> = Vec::new();
    for id in ids.iter().flatten() {
        if seen.contains(id) {
            continue;
        }
        seen.push(*id);
        let (same, other): (Vec<u16>, Vec<u16>) =
            all.iter().partition(|&&i| ids[i as usize] == Some(*id));
        let n = same.len();
        let mut order = same;
        order.extend(other);
        out.push(group(Some(*id), cands, order, n));
    }
    out
}

fn group(region: Option<RegionId>, cands: &[Candidate], order: Vec<u16>, draw: usize) -> Group {
    let mut cum = Vec::with_capacity(draw);
    let mut total = 0.0;
    // A zero (or absurd) weight must not make a relay unreachable when it is all there is.
    let all_zero = order[..draw]
        .iter()
        .all(|&i| cands[i as usize].weight.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater));
    for &i in &order[..draw] {
        let w = cands[i as usize].weight;
        total += if all_zero { 1.0 } else { usable(w) };
        cum.push(total);
    }
    let links = order
        .iter()
        .enumerate()
        .map(|(pos, &i)| {
            let c = &cands[i as usize];
            let v = match geo(&c.region) {
                Some(g) => format!("<{}>; rel=duplicate; pri={}; geo={g}", c.url, pos + 1),
                None => format!("<{}>; rel=duplicate; pri={}", c.url, pos + 1),
            };
            // The URL came out of the url crate, so it is a valid header value.
            HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
        })
        .collect();
    Group { region, order, cum, links }
}

impl Entry {
    fn group(&self, region: Option<RegionId>) -> Option<&Group> {
        let specific =
            region.and_then(|r| self.groups.iter().skip(1).find(|g| g.region == Some(r)));
        specific.or_else(|| self.groups.first())
    }

    /// Picks a relay for a client of `region`, with `u` uniform in [0, 1): weighted by quota
    /// among the relays of the client's region when there are any, else among all.
    /// Returns the group and the position in its order.
    ///
    /// `need`: what the client needs (see [`Serves::client`]); it is sent only to a relay that
    /// offers it (by weight among those of the first tier, else among every such candidate),
    /// or to none.
    #[inline]
    pub fn choose(
        &self,
        region: Option<RegionId>,
        u: f64,
        need: Serves,
    ) -> Option<(&Group, usize)> {
        let g = self.group(region)?;
        if !self.common.covers(need) {
            return self.choose_where(g, u, need).map(|pos| (g, pos));
        }
        let total = *g.cum.last()?;
        let x = u * total;
        let pos = g.cum.iter().position(|&c| x < c).unwrap_or(g.cum.len() - 1);
        Some((g, pos))
    }

    /// A position in `g.order` of a candidate that offers `need`, drawn by weight: among the
    /// drawn tier first, then among all. No allocation: candidate lists are a few relays.
    fn choose_where(&self, g: &Group, u: f64, need: Serves) -> Option<usize> {
        let weight_at = |pos: usize| self.weight_at(g, pos);
        let fits = |pos: &usize| self.candidates[g.order[*pos] as usize].serves.covers(need);
        for range in [0..g.cum.len(), 0..g.order.len()] {
            let total: f64 = range.clone().filter(fits).map(weight_at).sum();
            let mut first = None;
            let mut acc = 0.0;
            for pos in range.clone().filter(fits) {
                first.get_or_insert(pos);
                acc += weight_at(pos);
                if total > 0.0 && u * total < acc {
                    return Some(pos);
                }
            }
            // Only zero weights: the first fitting candidate rather than none.
            if first.is_some() {
                return first;
            }
        }
        None
    }

    /// The weight position `pos` of `g` is drawn with (as the group's cumulative weights
    /// count it within the tier).
    fn weight_at(&self, g: &Group, pos: usize) -> f64 {
        match g.cum.get(pos) {
            Some(c) => c - if pos == 0 { 0.0 } else { g.cum[pos - 1] },
            None => usable(self.candidates[g.order[pos] as usize].weight),
        }
    }

    /// For a client of `region` that needs `need`: every candidate that offers it, in the
    /// order it is offered (redirect, then `Link` and Metalink alternatives), with its chance
    /// of being the redirect target, as [`Entry::choose`] draws (zero for the ones only offered
    /// as alternatives: other regions' relays when the client's region has some that fit).
    pub fn ranking(&self, region: Option<RegionId>, need: Serves) -> Vec<(&Candidate, f64)> {
        let Some(g) = self.group(region) else { return Vec::new() };
        let fits = |pos: &usize| self.candidate(g, *pos).serves.covers(need);
        let tier = 0..g.cum.len();
        let drawn = if tier.clone().any(|p| fits(&p)) { tier } else { 0..g.order.len() };
        let total: f64 = drawn.clone().filter(fits).map(|p| self.weight_at(g, p)).sum();
        let first = drawn.clone().find(fits);
        (0..g.order.len())
            .filter(fits)
            .map(|pos| {
                let share = if !drawn.contains(&pos) {
                    0.0
                } else if total > 0.0 {
                    self.weight_at(g, pos) / total
                } else if Some(pos) == first {
                    1.0
                } else {
                    0.0
                };
                (self.candidate(g, pos), share)
            })
            .collect()
    }

    /// Why a candidate may not serve this client (relay restrictions, client steering,
    /// HTTPS), or `None` when it may.
    pub fn refusal(
        &self,
        c: &Candidate,
        client: &Place,
        steer: &Steer,
        need: Serves,
    ) -> Option<String> {
        if let Some(why) = c.serves.lack(need) {
            return Some(why.into());
        }
        if !c.only.is_empty() && !client.country.is_some_and(|k| c.only.contains(&k)) {
            let list: Vec<String> = c.only.iter().map(|k| geo::text(*k)).collect();
            return Some(format!("serves only clients from {}", list.join(", ")));
        }
        if let Some(k) = client.country.filter(|k| c.never.contains(k)) {
            return Some(format!("does not serve clients from {}", geo::text(k)));
        }
        if let Some(k) = c.place.country.filter(|k| steer.avoid.contains(k)) {
            return Some(format!("the client asked to avoid {}", geo::text(k)));
        }
        None
    }

    /// Candidates for a client placed at `client` by the databases: the ones that may serve
    /// it, nearest tier first, heavier first within a tier: (candidate index, rank, km).
    pub fn geo_ranking(
        &self,
        client: &Place,
        steer: &Steer,
        need: Serves,
    ) -> Vec<(usize, Rank, Option<f64>)> {
        let mut out: Vec<(usize, Rank, Option<f64>)> = self
            .candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| self.refusal(c, client, steer, need).is_none())
            .map(|(i, c)| {
                let (r, d) = geo::rank(client, &c.place);
                (i, r, d)
            })
            .collect();
        out.sort_by(|a, b| {
            a.1.cmp(&b.1)
                .then_with(|| self.candidates[b.0].weight.total_cmp(&self.candidates[a.0].weight))
                .then_with(|| a.0.cmp(&b.0))
        });
        out
    }

    /// Draws by weight among the best-ranked of `ranking`, `u` uniform in [0, 1): a position
    /// in `ranking`.
    pub fn geo_choose(&self, ranking: &[(usize, Rank, Option<f64>)], u: f64) -> Option<usize> {
        let best = ranking.first()?.1;
        let tier = ranking.iter().take_while(|r| r.1 == best).count();
        let w = |i: usize| usable(self.candidates[ranking[i].0].weight);
        let total: f64 = (0..tier).map(w).sum();
        if total <= 0.0 {
            return Some(0);
        }
        let mut acc = 0.0;
        for i in 0..tier {
            acc += w(i);
            if u * total < acc {
                return Some(i);
            }
        }
        Some(tier - 1)
    }

    /// The `302` to `ranking[pos]`, with `Link`s to the others in order (up to `max_links`),
    /// the Metalink and the digests; counts the redirect for the relay when `count`.
    pub fn geo_redirect(
        &self,
        ranking: &[(usize, Rank, Option<f64>)],
        pos: usize,
        max_links: usize,
        count: bool,
    ) -> Response<Body> {
        let mut resp = response::empty(StatusCode::FOUND);
        let c = &self.candidates[ranking[pos].0];
        let h = resp.headers_mut();
        h.insert(LOCATION, c.location.clone());
        h.insert(CACHE_CONTROL, PRIVATE_NO_CACHE);
        for (n, (i, _, _)) in ranking.iter().enumerate().filter(|(n, _)| *n != pos).take(max_links)
        {
            let o = &self.candidates[*i];
            let v = match geo::text_of(o.place.country) {
                Some(g) => format!("<{}>; rel=duplicate; pri={}; geo={g}", o.url, n + 1),
                None => format!("<{}>; rel=duplicate; pri={}", o.url, n + 1),
            };
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.append(LINK, v);
            }
        }
        self.meta_headers(h);
        if count {
            c.counter.hit();
        }
        resp
    }

    /// The relay at a chosen position.
    pub fn candidate(&self, g: &Group, pos: usize) -> &Candidate {
        &self.candidates[g.order[pos] as usize]
    }

    /// The `302` to the chosen relay, with `Link`s to up to `max_links` other candidates, the
    /// Metalink and the digests; counts the redirect for the relay when `count` (a GET).
    pub fn redirect(
        &self,
        g: &Group,
        pos: usize,
        max_links: usize,
        count: bool,
        need: Serves,
    ) -> Response<Body> {
        let mut resp = response::empty(StatusCode::FOUND);
        let h = resp.headers_mut();
        h.reserve(6 + max_links.min(g.links.len()));
        self.redirect_headers(g, pos, max_links, count, need, |name, value| {
            h.append(name, value.clone());
        });
        resp
    }

    /// The same redirect written as bytes by the server's plain path (see
    /// [`crate::http::plain`]).
    pub fn write_redirect(
        &self,
        g: &Group,
        pos: usize,
        max_links: usize,
        count: bool,
        need: Serves,
        out: &mut Vec<u8>,
    ) {
        let mut r = PlainResponse::new(out, StatusCode::FOUND);
        self.redirect_headers(g, pos, max_links, count, need, |name, value| r.header(&name, value));
        r.finish_empty();
    }

    /// The header fields of a redirect, in order: `Location`, `Cache-Control`, the `Link`s
    /// and the digests.
    fn redirect_headers(
        &self,
        g: &Group,
        pos: usize,
        max_links: usize,
        count: bool,
        need: Serves,
        mut put: impl FnMut(HeaderName, &HeaderValue),
    ) {
        let c = self.candidate(g, pos);
        put(LOCATION, &c.location);
        put(CACHE_CONTROL, &PRIVATE_NO_CACHE);
        let listed = |i: &usize| *i != pos && self.candidate(g, *i).serves.covers(need);
        for (_, link) in g.links.iter().enumerate().filter(|(i, _)| listed(i)).take(max_links) {
            put(LINK, link);
        }
        put(LINK, &self.describedby);
        put(DIGEST, &self.digest);
        put(REPR_DIGEST, &self.repr_digest);
        if count {
            c.counter.hit();
        }
    }

    /// `Link: rel=describedby`, `Digest` and `Repr-Digest`.
    pub fn meta_headers(&self, h: &mut HeaderMap) {
        h.append(LINK, self.describedby.clone());
        h.insert(DIGEST, self.digest.clone());
        h.insert(REPR_DIGEST, self.repr_digest.clone());
    }
}

/// Redirects depend on the client (region, health): no shared cache may reuse them.
const PRIVATE_NO_CACHE: HeaderValue = HeaderValue::from_static("private, no-cache");

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use odi_network::builder::NetworkBuilder;
    use odi_network::raw::{
        ArtifactEntry, CatalogFile, DirectoryFile, DirectoryKind, RelayFile, Sha256,
    };
    use odi_network::safe_path::ArtifactPath;
    use odi_network::trust::{TrustAnchor, TrustState};

    /// A network with one directory `dir` (region eu) holding catalog `c` with artifacts
    /// `a.bin` and `dir/b c.bin`, and relays given as (name, region, quota MiB).
    pub(crate) fn network(relays: &[(&str, &str, u64)]) -> Arc<Network> {
        let mut b = NetworkBuilder::new().unwrap();
        let art = |p: &str, n: u8| ArtifactEntry {
            path: ArtifactPath::new(p).unwrap(),
            size: 100,
            sha256: Sha256([n; 32]),
            published: None,
            expunged: None,
        };
        b.catalogs.insert(
            "c".into(),
            CatalogFile {
                serial: 1,
                name: "c".into(),
                description: "test".into(),
                tags: vec![],
                origins: vec!["https://origin.example/c/".into()],
                replicas: relays.len() as u32,
                import: None,
                artifacts: vec![art("a.bin", 1), art("dir/b c.bin", 2)],
            },
        );
        b.directories.insert(
            "dir".into(),
            DirectoryFile {
                serial: 1,
                name: "dir".into(),
                url: "https://dir.example/".into(),
                region: "eu".into(),
                kind: DirectoryKind::Directory,
                contact: None,
                catalogs: vec!["c".into()],
                links: vec![],
                references: vec![],
            },
        );
        for (name, region, mib) in relays {
            b.relays.insert(
                (*name).into(),
                RelayFile {
                    serial: 1,
                    name: (*name).into(),
                    // Relays named `plain-*` serve plain HTTP only.
                    url: if name.starts_with("plain") {
                        format!("http://{name}.example/mirror")
                    } else {
                        format!("https://{name}.example/mirror")
                    },
                    region: (*region).into(),
                    contact: "x@example".into(),
                    quota: format!("{mib} MiB").parse().unwrap(),
                    bandwidth: None,
                    directories: vec!["dir".into()],
                    catalogs: vec!["c".into()],
                    tags: vec![],
                    location: None,
                    countries: vec![],
                    exclude_countries: vec![],
                },
            );
        }
        let tree = b.tree().unwrap();
        let loaded = odi_network::load::load(
            &tree,
            &TrustAnchor { pinned: vec![] },
            &TrustState::default(),
            OffsetDateTime::now_utc(),
        )
        .unwrap();
        Arc::new(loaded.network)
    }

    pub(crate) fn view(net: Arc<Network>) -> Arc<View> {
        let assignment = odi_network::assign::assign(&net, &Default::default());
        Arc::new(View {
            commit: "c1".into(),
            network: net,
            assignment,
            extras: Default::default(),
            applied_at: OffsetDateTime::UNIX_EPOCH,
        })
    }

    /// Relays that hold every artifact of `c` and answered over both families.
    pub(crate) fn holding(net: &Network, names: &[&str]) -> Healthy {
        let held: Held = net.catalogs["c"]
            .live()
            .map(|a| (("c".to_owned(), a.path.as_str().to_owned()), a.sha256.0))
            .collect();
        let held = Arc::new(held);
        names.iter().map(|n| ((*n).to_owned(), (held.clone(), Serves::DUAL))).collect()
    }

    fn regions() -> RegionMap {
        RegionMap::new(
            &[
                ("10.1.0.0/16".parse().unwrap(), "eu".into()),
                ("10.2.0.0/16".parse().unwrap(), "us".into()),
            ],
            &[],
        )
    }

    #[test]
    fn routes_only_to_holders_with_the_right_bytes() {
        let net = network(&[("r1", "eu", 1), ("r2", "us", 1), ("r3", "eu", 1)]);
        let v = view(net.clone());
        let mut healthy = holding(&net, &["r1", "r2"]);
        // r3 lags: it holds a.bin with other bytes and nothing else.
        healthy.insert(
            "r3".into(),
            (
                Arc::new(HashMap::from([(("c".to_owned(), "a.bin".to_owned()), [9u8; 32])])),
                Serves::DUAL,
            ),
        );
        let stats = Stats::in_memory();
        let t = Table::build(&BuildInput {
            view: &v,
            me: "dir",
            healthy: &healthy,
            regions: &regions(),
            stats: &stats,
            geo: &Geo::default(),
        });
        let e = t.get("/r/c/a.bin").unwrap();
        let mut names: Vec<&str> = e.candidates.iter().map(|c| &*c.relay).collect();
        names.sort_unstable();
        assert_eq!(names, ["r1", "r2"]);
        // The encoded and decoded forms of a path with a space both find the entry.
        assert!(t.get("/r/c/dir/b%20c.bin").is_some());
        assert!(t.get("/r/c/dir/b c.bin").is_some());
        assert!(t.get("/r/c/nope").is_none());
        let (g, pos) =
            e.choose(regions().lookup("10.2.0.1".parse().unwrap()), 0.99, Serves::V4).unwrap();
        assert_eq!(&*e.candidate(g, pos).relay, "r2", "a us client goes to the us relay");
        let r = e.redirect(g, pos, 5, true, Serves::V4);
        assert_eq!(r.status(), 302);
        assert_eq!(r.headers()[LOCATION], "https://r2.example/mirror/r/c/a.bin");
        let links: Vec<_> =
            r.headers().get_all(LINK).iter().map(|v| v.to_str().unwrap().to_owned()).collect();
        assert_eq!(
            links,
            [
                "<https://r1.example/mirror/r/c/a.bin>; rel=duplicate; pri=2; geo=eu",
                "<https://dir.example/r/c/a.bin.meta4>; rel=describedby; type=\"application/metalink4+xml\""
            ]
        );
        assert_eq!(r.headers()[DIGEST], "SHA-256=AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=");
        assert_eq!(
            r.headers()[REPR_DIGEST],
            "sha-256=:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=:"
        );
        assert_eq!(stats.relay("r2").get(), 1);
    }

    #[test]
    fn weights_and_region_preference() {
        let net = network(&[("e1", "eu", 1), ("e2", "eu", 3), ("u1", "us", 8)]);
        let v = view(net.clone());
        let healthy = holding(&net, &["e1", "e2", "u1"]);
        let stats = Stats::in_memory();
        let rm = regions();
        let t = Table::build(&BuildInput {
            view: &v,
            me: "dir",
            healthy: &healthy,
            regions: &rm,
            stats: &stats,
            geo: &Geo::default(),
        });
        let e = t.get("/r/c/a.bin").unwrap();
        let count = |region: Option<RegionId>| {
            let mut n: HashMap<String, u32> = HashMap::new();
            for i in 0..4000 {
                let (g, pos) = e.choose(region, (i as f64 + 0.5) / 4000.0, Serves::V4).unwrap();
                *n.entry(e.candidate(g, pos).relay.to_string()).or_default() += 1;
            }
            n
        };
        let eu = count(rm.id("eu"));
        assert_eq!(eu.get("u1"), None, "eu clients stay in eu");
        assert_eq!(eu["e1"], 1000);
        assert_eq!(eu["e2"], 3000);
        let anywhere = count(None);
        assert_eq!(anywhere.values().sum::<u32>(), 4000);
        let share = |n: u32| n as f64 / 4000.0;
        assert!((share(anywhere["e1"]) - 1.0 / 12.0).abs() < 0.001);
        assert!((share(anywhere["u1"]) - 8.0 / 12.0).abs() < 0.001);
    }

    #[test]
    fn https_clients_go_only_to_https_relays() {
        let net = network(&[("e1", "eu", 1), ("plain-e2", "eu", 3), ("plain-u1", "us", 8)]);
        let v = view(net.clone());
        let healthy = holding(&net, &["e1", "plain-e2", "plain-u1"]);
        let (stats, rm) = (Stats::in_memory(), regions());
        let t = Table::build(&BuildInput {
            view: &v,
            me: "dir",
            healthy: &healthy,
            regions: &rm,
            stats: &stats,
            geo: &Geo::default(),
        });
        let e = t.get("/r/c/a.bin").unwrap();
        let draws = |region: Option<RegionId>, secure: bool| {
            let need = if secure { Serves::V4.with(Serves::HTTPS) } else { Serves::V4 };
            let mut n: HashMap<String, u32> = HashMap::new();
            for i in 0..400 {
                let (g, pos) = e.choose(region, (i as f64 + 0.5) / 400.0, need).unwrap();
                *n.entry(e.candidate(g, pos).relay.to_string()).or_default() += 1;
            }
            n
        };
        // (client region, secure, relay -> draws out of 400)
        type Case<'a> = (&'a str, bool, &'a [(&'a str, u32)]);
        let cases: &[Case<'_>] = &[
            ("eu", false, &[("e1", 100), ("plain-e2", 300)]),
            ("eu", true, &[("e1", 400)]),
            // The us tier has no HTTPS relay: another region's HTTPS relay, not plain HTTP.
            ("us", true, &[("e1", 400)]),
            ("us", false, &[("plain-u1", 400)]),
        ];
        for (region, secure, want) in cases {
            let want: HashMap<String, u32> =
                want.iter().map(|(r, n)| ((*r).to_owned(), *n)).collect();
            assert_eq!(draws(rm.id(region), *secure), want, "{region} secure={secure}");
        }
        let https = Serves::V4.with(Serves::HTTPS);
        let (g, pos) = e.choose(rm.id("eu"), 0.0, https).unwrap();
        let r = e.redirect(g, pos, 5, false, https);
        let links: Vec<_> = r.headers().get_all(LINK).iter().map(|v| v.to_str().unwrap()).collect();
        assert!(links.iter().all(|l| !l.contains("http://")), "no plain-HTTP Link: {links:?}");
        let doc = t.metalink(e, rm.id("eu"), https, None);
        assert!(doc.contains("https://e1.example/") && !doc.contains("http://plain"), "{doc}");
        assert!(t.metalink(e, rm.id("eu"), Serves::V4, None).contains("http://plain-e2.example/"));

        // Only plain-HTTP relays: an HTTPS client gets none (the directory answers it itself).
        let net = network(&[("plain-a", "eu", 1)]);
        let v = view(net.clone());
        let healthy = holding(&net, &["plain-a"]);
        let t = Table::build(&BuildInput {
            view: &v,
            me: "dir",
            healthy: &healthy,
            regions: &rm,
            stats: &stats,
            geo: &Geo::default(),
        });
        let e = t.get("/r/c/a.bin").unwrap();
        assert!(e.choose(rm.id("eu"), 0.5, https).is_none());
        assert!(e.choose(rm.id("eu"), 0.5, Serves::V4).is_some());
    }

    #[test]
    fn clients_go_only_to_relays_of_their_family_and_the_ranking_says_so() {
        let net = network(&[("v4", "eu", 1), ("v6", "eu", 3), ("dual", "us", 4)]);
        let v = view(net.clone());
        let mut healthy = holding(&net, &["v4", "v6", "dual"]);
        healthy.get_mut("v4").unwrap().1 = Serves::V4;
        healthy.get_mut("v6").unwrap().1 = Serves::V6;
        let (stats, rm) = (Stats::in_memory(), regions());
        let t = Table::build(&BuildInput {
            view: &v,
            me: "dir",
            healthy: &healthy,
            regions: &rm,
            stats: &stats,
            geo: &Geo::default(),
        });
        let e = t.get("/r/c/a.bin").unwrap();
        // (client region, need, relay -> draws out of 400)
        type Case<'a> = (&'a str, Serves, &'a [(&'a str, u32)]);
        let cases: &[Case<'_>] = &[
            // The eu tier has one relay of each family: each family's clients get theirs.
            ("eu", Serves::V4, &[("v4", 400)]),
            ("eu", Serves::V6, &[("v6", 400)]),
            ("us", Serves::V6, &[("dual", 400)]),
            ("us", Serves::V4, &[("dual", 400)]),
        ];
        for (region, need, want) in cases {
            let mut n: HashMap<String, u32> = HashMap::new();
            for i in 0..400 {
                let (g, pos) = e.choose(rm.id(region), (i as f64 + 0.5) / 400.0, *need).unwrap();
                *n.entry(e.candidate(g, pos).relay.to_string()).or_default() += 1;
            }
            let want: HashMap<String, u32> =
                want.iter().map(|(r, n)| ((*r).to_owned(), *n)).collect();
            assert_eq!(n, want, "{region} {need:?}");
            // The mirror list's chances are the draw's.
            let ranking = e.ranking(rm.id(region), *need);
            for (c, share) in &ranking {
                assert!(c.serves.covers(*need), "{} offered to {need:?}", c.relay);
                let drawn = f64::from(n.get(&*c.relay).copied().unwrap_or(0)) / 400.0;
                assert!((share - drawn).abs() < 1e-9, "{region} {need:?} {}: {share}", c.relay);
            }
            let (g, pos) = e.choose(rm.id(region), 0.0, *need).unwrap();
            let r = e.redirect(g, pos, 5, false, *need);
            for l in r.headers().get_all(LINK) {
                let l = l.to_str().unwrap();
                let refused = e.candidates.iter().filter(|c| !c.serves.covers(*need));
                for c in refused {
                    assert!(!l.contains(&*c.url), "{need:?} offered {l}");
                }
            }
        }
        assert_eq!(
            Serves::V4.lack(Serves::client(false, "2001:db8::1".parse().unwrap())),
            Some("did not answer its last probe over IPv6, and the client came over IPv6")
        );
        assert_eq!(Serves::client(false, "::ffff:10.0.0.1".parse().unwrap()), Serves::V4);
    }

    #[test]
    fn no_healthy_relay_means_no_candidates() {
        let net = network(&[("r1", "eu", 1)]);
        let v = view(net);
        let stats = Stats::in_memory();
        let t = Table::build(&BuildInput {
            view: &v,
            me: "dir",
            healthy: &HashMap::new(),
            regions: &RegionMap::default(),
            stats: &stats,
            geo: &Geo::default(),
        });
        let e = t.get("/r/c/a.bin").unwrap();
        assert!(e.candidates.is_empty());
        assert!(e.choose(None, 0.5, Serves::V4).is_none());
        let doc = t.metalink(e, None, Serves::V4, None);
        assert!(
            doc.contains("<url location=\"eu\" priority=\"1\">https://dir.example/r/c/a.bin</url>"),
            "{doc}"
        );
    }
}
