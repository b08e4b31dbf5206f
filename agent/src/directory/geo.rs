//! Where clients and relays are: MaxMind-format databases (GeoIP2 / GeoLite2 City or Country,
//! DB-IP, and an ASN database) read with the `maxminddb` crate, reloaded when their files
//! change, and the tiers a directory ranks relays by for a client.
//!
//! Tiers, best first: the same autonomous system, the same country, the same continent, then
//! by distance in bands of [`BAND_KM`]; within the best tier relays are drawn by weight. A
//! relay whose place is unknown ranks last. A relay may serve only some countries, or refuse
//! some; a client may steer with `?country=XX` and `?avoid=XX,YY`.
//!
//! A database that cannot be read keeps the last good one (or none) and the status says why;
//! a lookup that finds nothing leaves the client without a place (drawn by weight among all).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwapOption;
use serde::Deserialize;

use crate::locks::lock;

/// Width of a distance band in the last tier: relays within the same band of the client count
/// as equally near (and are drawn from by weight).
pub const BAND_KM: u32 = 1000;

/// A two-letter code, upper case.
pub type Code = [u8; 2];

/// What is known of where an address is.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Place {
    /// ISO 3166-1 alpha-2 country.
    pub country: Option<Code>,
    /// Continent code (`EU`, `NA`, ...).
    pub continent: Option<Code>,
    /// Latitude and longitude in degrees.
    pub coords: Option<(f64, f64)>,
    /// Autonomous system number.
    pub asn: Option<u32>,
}

/// A two-letter code from text, upper-cased; `None` unless exactly two ASCII letters.
pub fn code(s: &str) -> Option<Code> {
    let b = s.as_bytes();
    (b.len() == 2 && b.iter().all(u8::is_ascii_alphabetic))
        .then(|| [b[0].to_ascii_uppercase(), b[1].to_ascii_uppercase()])
}

/// A code as text.
pub fn text(c: Code) -> String {
    String::from_utf8_lossy(&c).into_owned()
}

/// A code as the lower-case text `geo=` and Metalink `location` use.
pub fn text_of(c: Option<Code>) -> Option<String> {
    c.map(|c| text(c).to_ascii_lowercase())
}

/// Great-circle distance in km (haversine).
pub fn distance_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, lo1, la2, lo2) =
        (a.0.to_radians(), a.1.to_radians(), b.0.to_radians(), b.1.to_radians());
    let h = ((la2 - la1) / 2.0).sin().powi(2)
        + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().min(1.0).asin()
}

/// How near a relay is to a client: smaller is nearer. (tier, distance band).
pub type Rank = (u8, u32);

/// Tier names, for mirror lists.
pub fn tier_name(r: Rank) -> &'static str {
    match r.0 {
        0 => "same-asn",
        1 => "same-country",
        2 => "same-continent",
        3 => "by-distance",
        _ => "unknown-place",
    }
}

/// The rank of a relay at `relay` for a client at `client`, with the distance when both
/// coordinates are known.
pub fn rank(client: &Place, relay: &Place) -> (Rank, Option<f64>) {
    let d = client.coords.zip(relay.coords).map(|(a, b)| distance_km(a, b));
    let same = |a: Option<Code>, b: Option<Code>| a.is_some() && a == b;
    let r = if client.asn.is_some() && client.asn == relay.asn {
        (0, 0)
    } else if same(client.country, relay.country) {
        (1, 0)
    } else if same(client.continent, relay.continent) {
        (2, 0)
    } else if let Some(km) = d {
        (3, (km as u32) / BAND_KM)
    } else {
        (4, 0)
    };
    (r, d)
}

/// A client's steering: `?country=XX` (be placed there) and `?avoid=XX,YY` (no relay there).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Steer {
    /// Place the client in this country instead of its address's.
    pub country: Option<Code>,
    /// Countries whose relays this client does not want.
    pub avoid: Vec<Code>,
}

impl Steer {
    /// From a query string; unknown parameters are ignored, malformed codes too.
    pub fn from_query(q: Option<&str>) -> Self {
        let mut s = Steer::default();
        for kv in q.unwrap_or("").split('&') {
            match kv.split_once('=') {
                Some(("country", v)) => s.country = code(v),
                Some(("avoid", v)) => {
                    s.avoid.extend(v.split([',', '+']).filter_map(|c| code(c.trim())))
                }
                _ => {}
            }
        }
        s
    }

    /// Applies the steering to a client's place: a chosen country drops what the address
    /// said about country, network and coordinates (the continent is kept only if unknown).
    pub fn apply(&self, mut p: Place) -> Place {
        if let Some(c) = self.country {
            if p.country != Some(c) {
                p = Place { country: Some(c), ..Place::default() };
            }
        }
        p
    }
}

/// Why a database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// The file could not be read or is not a MaxMind DB.
    #[error("{path}: {message}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What the reader said.
        message: String,
    },
}

#[derive(Debug)]
struct Db {
    path: PathBuf,
    reader: ArcSwapOption<maxminddb::Reader<Vec<u8>>>,
    /// (modified time, length) of the file loaded, to notice a new one.
    stamp: Mutex<Option<(SystemTime, u64)>>,
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl Db {
    fn open(path: &Path) -> Result<Self, GeoError> {
        let db =
            Db { path: path.to_owned(), reader: ArcSwapOption::empty(), stamp: Mutex::new(None) };
        db.load()?;
        Ok(db)
    }

    fn load(&self) -> Result<(), GeoError> {
        let err = |m: String| GeoError::Open { path: self.path.clone(), message: m };
        let st = stamp(&self.path);
        let reader =
            maxminddb::Reader::open_readfile(&self.path).map_err(|e| err(e.to_string()))?;
        self.reader.store(Some(Arc::new(reader)));
        *lock(&self.stamp) = st;
        Ok(())
    }

    fn reload_if_changed(&self) -> Option<Result<(), GeoError>> {
        let now = stamp(&self.path);
        if now == *lock(&self.stamp) {
            return None;
        }
        Some(self.load())
    }
}

#[derive(Deserialize)]
struct CityRecord<'a> {
    #[serde(borrow, default)]
    country: Option<IsoCode<'a>>,
    #[serde(borrow, default)]
    continent: Option<ContinentCode<'a>>,
    #[serde(default)]
    location: Option<Location>,
}

#[derive(Deserialize)]
struct IsoCode<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct ContinentCode<'a> {
    #[serde(borrow, default)]
    code: Option<&'a str>,
}

#[derive(Deserialize)]
struct Location {
    #[serde(default)]
    latitude: Option<f64>,
    #[serde(default)]
    longitude: Option<f64>,
}

#[derive(Deserialize)]
struct AsnRecord {
    #[serde(default)]
    autonomous_system_number: Option<u32>,
}

/// The directory's databases.
#[derive(Debug, Default)]
pub struct Geo {
    city: Option<Db>,
    asn: Option<Db>,
}

impl Geo {
    /// Opens the configured databases; a file that cannot be read is an error at start.
    pub fn open(city: Option<&Path>, asn: Option<&Path>) -> Result<Self, GeoError> {
        Ok(Geo { city: city.map(Db::open).transpose()?, asn: asn.map(Db::open).transpose()? })
    }

    /// No database configured.
    pub fn is_empty(&self) -> bool {
        self.city.is_none() && self.asn.is_none()
    }

    /// Reloads a database whose file changed; returns the errors of those that failed (the
    /// last good one stays in use).
    pub fn reload_if_changed(&self) -> Vec<GeoError> {
        [&self.city, &self.asn]
            .into_iter()
            .flatten()
            .filter_map(Db::reload_if_changed)
            .filter_map(Result::err)
            .collect()
    }

    /// What the databases say of `ip`.
    pub fn lookup(&self, ip: IpAddr) -> Place {
        // An IPv4-mapped IPv6 peer (dual-stack listener) is looked up as the IPv4 address.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let mut p = Place::default();
        if let Some(r) = self.city.as_ref().and_then(|d| d.reader.load_full()) {
            if let Ok(Some(c)) = r.lookup(ip).and_then(|l| l.decode::<CityRecord<'_>>()) {
                p.country = c.country.and_then(|c| c.iso_code).and_then(code);
                p.continent = c.continent.and_then(|c| c.code).and_then(code);
                p.coords = c.location.and_then(|l| l.latitude.zip(l.longitude));
            }
        }
        if let Some(r) = self.asn.as_ref().and_then(|d| d.reader.load_full()) {
            if let Ok(Some(a)) = r.lookup(ip).and_then(|l| l.decode::<AsnRecord>()) {
                p.asn = a.autonomous_system_number;
            }
        }
        p
    }
}

/// A relay's place: its own statement, else what the databases say of its address (when its
/// URL's host is an IP address; names are not resolved on the request path).
pub fn relay_place(geo: &Geo, relay: &odi_network::model::Relay) -> Place {
    let mut p = match relay.url.host() {
        Some(url::Host::Ipv4(ip)) => geo.lookup(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => geo.lookup(IpAddr::V6(ip)),
        _ => Place::default(),
    };
    if let Some(l) = &relay.location {
        if let Some(c) = l.country.as_deref().and_then(code) {
            p.country = Some(c);
        }
        if let Some(c) = l.continent.as_deref().and_then(code) {
            p.continent = Some(c);
        }
        if let Some(c) = l.latitude.zip(l.longitude) {
            p.coords = Some(c);
        }
        if l.asn.is_some() {
            p.asn = l.asn;
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_a_database_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("GeoLite2-City.mmdb");
        for bytes in [&b""[..], b"not a database", &[0xab; 4096]] {
            std::fs::write(&bad, bytes).unwrap();
            let e = Geo::open(Some(&bad), None).unwrap_err().to_string();
            assert!(e.contains("GeoLite2-City.mmdb"), "{e}");
        }
        let e = Geo::open(None, Some(&dir.path().join("missing.mmdb"))).unwrap_err().to_string();
        assert!(e.contains("missing.mmdb"), "{e}");
        assert!(Geo::open(None, None).unwrap().is_empty());
    }

    #[test]
    fn ranks_and_steering() {
        let se = Place {
            country: code("se"),
            continent: code("EU"),
            coords: Some((59.3, 18.0)),
            asn: Some(1),
        };
        let de = Place {
            country: code("DE"),
            continent: code("EU"),
            coords: Some((51.3, 9.5)),
            asn: Some(2),
        };
        let jp = Place {
            country: code("JP"),
            continent: code("AS"),
            coords: Some((35.7, 139.7)),
            asn: None,
        };
        let au = Place {
            country: code("AU"),
            continent: code("OC"),
            coords: Some((-37.7, 145.2)),
            asn: None,
        };
        assert_eq!(rank(&se, &Place { asn: Some(1), ..Place::default() }).0, (0, 0));
        assert_eq!(rank(&se, &se).0, (0, 0));
        assert_eq!(rank(&de, &se).0, (2, 0));
        let (r, d) = rank(&jp, &au);
        assert_eq!(r.0, 3);
        assert!((d.unwrap() - 8150.0).abs() < 150.0, "{d:?}");
        let us = Place {
            country: code("US"),
            continent: code("NA"),
            coords: Some((41.9, -87.6)),
            asn: None,
        };
        assert!(rank(&jp, &au).0 < rank(&jp, &us).0, "Tokyo is nearer Melbourne than Chicago");
        assert_eq!(rank(&Place::default(), &se).0, (4, 0));

        let s = Steer::from_query(Some("country=jp&avoid=SE,de&x=1"));
        assert_eq!(s.country, code("JP"));
        assert_eq!(s.avoid, vec![*b"SE", *b"DE"]);
        assert_eq!(s.apply(se).country, code("JP"));
        assert_eq!(s.apply(se).asn, None);
        assert_eq!(Steer::from_query(Some("country=xyz")).country, None);
        assert_eq!(code("s1"), None);
    }
}
