//! Which region a client is in: its address (or, behind a trusted proxy, the right-most
//! untrusted `X-Forwarded-For` address) looked up in the configured prefix map.
//!
//! Regions are interned to small integers when the map is built, so the request path compares
//! numbers and never allocates. MaxMind databases are not read by this build (no reader in
//! the dependency tree); a configured `geoip_db` is refused at start rather than silently
//! ignored, so an operator is never surprised by region-blind routing.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

use crate::http::PlainRequest;

/// An interned region: an index into [`RegionMap::names`].
pub type RegionId = u16;

/// The prefix map, longest prefix first, with regions interned.
#[derive(Debug, Clone, Default)]
pub struct RegionMap {
    /// Prefixes sorted by descending length, so the first match is the longest.
    prefixes: Vec<(IpNet, RegionId)>,
    /// Region names by id.
    names: Vec<String>,
    /// Proxies whose `X-Forwarded-For` is believed.
    trusted: Vec<IpNet>,
}

/// Most `X-Forwarded-For` entries looked at; a longer chain is abuse or misconfiguration.
const MAX_XFF_HOPS: usize = 16;

impl RegionMap {
    /// Builds the map from `(prefix, region)` pairs and the trusted proxies.
    pub fn new(regions: &[(IpNet, String)], trusted: &[IpNet]) -> Self {
        let mut names: Vec<String> = Vec::new();
        let mut prefixes = Vec::with_capacity(regions.len());
        for (net, region) in regions {
            let region = region.to_ascii_lowercase();
            let id = match names.iter().position(|n| *n == region) {
                Some(i) => i,
                None => {
                    names.push(region);
                    names.len() - 1
                }
            };
            prefixes.push((*net, id as RegionId));
        }
        prefixes.sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
        Self { prefixes, names, trusted: trusted.to_vec() }
    }

    /// Whether any prefix is configured (when not, the client address is never looked at).
    pub fn is_empty(&self) -> bool {
        self.prefixes.is_empty()
    }

    /// Region names by id.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The id of a region name (case-insensitive), if any prefix maps to it.
    pub fn id(&self, region: &str) -> Option<RegionId> {
        self.names.iter().position(|n| n.eq_ignore_ascii_case(region)).map(|i| i as RegionId)
    }

    /// The region of an address (longest prefix).
    pub fn lookup(&self, ip: IpAddr) -> Option<RegionId> {
        // An IPv4-mapped IPv6 peer (dual-stack listener) is matched as the IPv4 address it is.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.prefixes.iter().find(|(net, _)| net.contains(&ip)).map(|(_, id)| *id)
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// The client address: the peer, or when the peer is a trusted proxy, the right-most
    /// `X-Forwarded-For` address that is not itself a trusted proxy (the left part of the
    /// header is whatever the client chose to send, so it is never believed).
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        self.client_ip_from(peer, headers.get_all("x-forwarded-for").iter().map(|v| v.as_bytes()))
    }

    /// [`RegionMap::client_ip`] from the `X-Forwarded-For` field values, in request order.
    pub fn client_ip_from<'a>(
        &self,
        peer: IpAddr,
        xff: impl DoubleEndedIterator<Item = &'a [u8]>,
    ) -> IpAddr {
        if self.trusted.is_empty() || !self.trusted(peer) {
            return peer;
        }
        let mut client = peer;
        let mut hops = 0;
        // Several X-Forwarded-For fields form one list in order; walk it from the right.
        for field in xff.rev() {
            let Ok(text) = std::str::from_utf8(field) else { return client };
            for part in text.rsplit(',') {
                hops += 1;
                if hops > MAX_XFF_HOPS {
                    return client;
                }
                let Some(ip) = parse_forwarded_addr(part.trim()) else { return client };
                client = ip;
                if !self.trusted(ip) {
                    return ip;
                }
            }
        }
        client
    }

    /// Whether the client came over HTTPS: over TLS to this agent, or through a trusted proxy
    /// that says so in its (right-most) `X-Forwarded-Proto`. A client that did is sent only
    /// to HTTPS relays.
    pub fn secure_from<'a>(
        &self,
        peer: IpAddr,
        tls: bool,
        xfp: impl DoubleEndedIterator<Item = &'a [u8]>,
    ) -> bool {
        if tls {
            return true;
        }
        if self.trusted.is_empty() || !self.trusted(peer) {
            return false;
        }
        // The nearest proxy appends last; what the client itself sent is further left.
        xfp.rev()
            .find_map(|v| v.rsplit(|b| *b == b',').next())
            .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"https"))
    }

    /// [`RegionMap::secure_from`] for a request through the router.
    pub fn secure_request(&self, peer: IpAddr, tls: bool, headers: &HeaderMap) -> bool {
        self.secure_from(
            peer,
            tls,
            headers.get_all("x-forwarded-proto").iter().map(|v| v.as_bytes()),
        )
    }

    /// [`RegionMap::secure_from`] for a request the server parsed itself.
    pub fn secure_plain(&self, req: &PlainRequest<'_>) -> bool {
        self.secure_from(req.remote.ip(), req.tls, req.header_values("x-forwarded-proto"))
    }

    /// The region of a request: `None` without a prefix map or when no prefix matches.
    pub fn region_of_request(&self, peer: IpAddr, headers: &HeaderMap) -> Option<RegionId> {
        if self.is_empty() {
            return None;
        }
        self.lookup(self.client_ip(peer, headers))
    }

    /// [`RegionMap::region_of_request`] for a request the server parsed itself.
    pub fn region_of_plain(&self, req: &PlainRequest<'_>) -> Option<RegionId> {
        if self.is_empty() {
            return None;
        }
        self.lookup(self.client_ip_from(req.remote.ip(), req.header_values("x-forwarded-for")))
    }
}

/// One `X-Forwarded-For` element: a bare address, `[v6]`, or either with a port.
fn parse_forwarded_addr(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Some(sa.ip());
    }
    s.strip_prefix('[').and_then(|r| r.strip_suffix(']')).and_then(|r| r.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> RegionMap {
        let regions = vec![
            ("10.0.0.0/8".parse().unwrap(), "EU".to_owned()),
            ("10.1.0.0/16".parse().unwrap(), "us".to_owned()),
            ("2001:db8::/32".parse().unwrap(), "eu".to_owned()),
        ];
        RegionMap::new(
            &regions,
            &["127.0.0.1/32".parse().unwrap(), "192.168.0.0/16".parse().unwrap()],
        )
    }

    #[test]
    fn https_only_when_tls_or_a_trusted_proxy_says_so() {
        let m = map();
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        let client: IpAddr = "10.9.9.9".parse().unwrap();
        // (peer, tls, X-Forwarded-Proto fields, secure)
        let cases: &[(IpAddr, bool, &[&str], bool)] = &[
            (client, true, &[], true),
            (client, false, &[], false),
            (client, false, &["https"], false), // an untrusted peer's header is not believed
            (proxy, false, &["https"], true),
            (proxy, false, &["HTTPS "], true),
            (proxy, false, &["http"], false),
            (proxy, false, &["https, http"], false), // the nearest proxy spoke last
            (proxy, false, &["http", "https"], true),
            (proxy, false, &[], false),
        ];
        for (peer, tls, xfp, want) in cases {
            let mut h = HeaderMap::new();
            for v in *xfp {
                h.append("x-forwarded-proto", v.parse().unwrap());
            }
            assert_eq!(m.secure_request(*peer, *tls, &h), *want, "{peer} {tls} {xfp:?}");
        }
    }

    fn xff(v: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for x in v {
            h.append("x-forwarded-for", x.parse().unwrap());
        }
        h
    }

    #[test]
    fn longest_prefix_wins() {
        let m = map();
        assert_eq!(m.names(), ["eu", "us"]);
        assert_eq!(m.lookup("10.2.3.4".parse().unwrap()), Some(0));
        assert_eq!(m.lookup("10.1.3.4".parse().unwrap()), Some(1));
        assert_eq!(m.lookup("2001:db8::1".parse().unwrap()), Some(0));
        assert_eq!(m.lookup("::ffff:10.1.0.9".parse().unwrap()), Some(1));
        assert_eq!(m.lookup("8.8.8.8".parse().unwrap()), None);
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let m = map();
        let untrusted: IpAddr = "8.8.8.8".parse().unwrap();
        assert_eq!(m.client_ip(untrusted, &xff(&["10.1.0.1"])), untrusted);
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(m.client_ip(proxy, &xff(&["10.1.0.1"])), "10.1.0.1".parse::<IpAddr>().unwrap());
        // The client may forge the left part; the right-most untrusted address is the client.
        assert_eq!(
            m.client_ip(proxy, &xff(&["10.1.0.1, 10.2.0.2, 192.168.1.1"])),
            "10.2.0.2".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            m.client_ip(proxy, &xff(&["10.1.0.1", "10.2.0.2"])),
            "10.2.0.2".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            m.client_ip(proxy, &xff(&["[2001:db8::5]:443"])),
            "2001:db8::5".parse::<IpAddr>().unwrap()
        );
        // Garbage stops the walk at the last good address.
        assert_eq!(m.client_ip(proxy, &xff(&["nonsense"])), proxy);
        assert_eq!(m.region_of_request(proxy, &xff(&["10.1.9.9"])), Some(1));
        assert_eq!(m.region_of_request(proxy, &HeaderMap::new()), None);
    }
}
